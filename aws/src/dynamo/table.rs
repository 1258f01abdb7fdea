//! Creating the table as the module documentation lays it out, for tests and local emulators (on
//! AWS the SAM template creates it).

use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, IndexStatus, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TableStatus, TimeToLiveSpecification, TimeToLiveStatus,
};
use entra_rotator::{Error, Result};

use super::DynamoStore;
use super::keys::{GSI1, GSI1_PK, GSI1_SK, GSI2, GSI2_PK, GSI2_SK, PK, SK, TTL_ATTRIBUTE};
use super::requests::request;
use crate::error;

impl DynamoStore {
    /// Creates the table as the module documentation describes and waits until it and its
    /// indexes are active, with TTL enabled on `expires_at`. A table of that name that exists
    /// already is left as it is, only waited for; for tests and local emulators (on AWS the SAM
    /// template creates the table).
    pub async fn create_table(client: &aws_sdk_dynamodb::Client, table: &str) -> Result<()> {
        let string_attribute = |name: &str| {
            AttributeDefinition::builder().attribute_name(name).attribute_type(ScalarAttributeType::S).build()
        };
        let key = |name: &str, kind: KeyType| KeySchemaElement::builder().attribute_name(name).key_type(kind).build();
        let index = |name: &str, pk: &str, sk: &str| -> Result<GlobalSecondaryIndex> {
            GlobalSecondaryIndex::builder()
                .index_name(name)
                .key_schema(key(pk, KeyType::Hash).map_err(request)?)
                .key_schema(key(sk, KeyType::Range).map_err(request)?)
                .projection(Projection::builder().projection_type(ProjectionType::All).build())
                .build()
                .map_err(request)
        };
        let attributes = [PK, SK, GSI1_PK, GSI1_SK, GSI2_PK, GSI2_SK]
            .into_iter()
            .map(string_attribute)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(request)?;
        let created = client
            .create_table()
            .table_name(table)
            .billing_mode(BillingMode::PayPerRequest)
            .set_attribute_definitions(Some(attributes))
            .key_schema(key(PK, KeyType::Hash).map_err(request)?)
            .key_schema(key(SK, KeyType::Range).map_err(request)?)
            .global_secondary_indexes(index(GSI1, GSI1_PK, GSI1_SK)?)
            .global_secondary_indexes(index(GSI2, GSI2_PK, GSI2_SK)?)
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) => {}
            Err(e) => return Err(error::store(format!("creating table {table}"), e)),
        }

        // About two minutes; a new on-demand table is usually active within seconds.
        let mut active = false;
        for _ in 0..240 {
            let described = client
                .describe_table()
                .table_name(table)
                .send()
                .await
                .map_err(|e| error::store(format!("describing table {table}"), e))?;
            if let Some(t) = described.table() {
                active = t.table_status() == Some(&TableStatus::Active)
                    && t.global_secondary_indexes().iter().all(|i| i.index_status() == Some(&IndexStatus::Active));
            }
            if active {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if !active {
            return Err(Error::Store {
                context: format!("creating table {table}"),
                transient: true,
                source: "the table did not become active in time".into(),
            });
        }

        // Enabling TTL twice is refused, so look first.
        let ttl = client
            .describe_time_to_live()
            .table_name(table)
            .send()
            .await
            .map_err(|e| error::store(format!("describing the TTL of table {table}"), e))?;
        let enabled = ttl.time_to_live_description().is_some_and(|d| {
            matches!(d.time_to_live_status(), Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling))
        });
        if !enabled {
            let spec = TimeToLiveSpecification::builder()
                .attribute_name(TTL_ATTRIBUTE)
                .enabled(true)
                .build()
                .map_err(request)?;
            client
                .update_time_to_live()
                .table_name(table)
                .time_to_live_specification(spec)
                .send()
                .await
                .map_err(|e| error::store(format!("enabling TTL on table {table}"), e))?;
        }
        Ok(())
    }
}
