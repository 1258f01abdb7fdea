//! What the Graph adapter reads: pages of applications and service principals (full or delta), one
//! application, and applications by display name. Every read may be sent again, so all are retried.

use reqwest::Method;
use serde::de::DeserializeOwned;

use super::GraphClient;
use super::failure::unreadable;
use super::odata;
use super::op::Op;
use super::request::parse;
use super::wire;
use crate::Result;
use crate::domain::ids::AppObjectId;
use crate::ports::directory::{Cursor, DirectoryApplication, DirectoryObject, Page};

impl GraphClient {
    /// A listing page of `collection` at `cursor`.
    pub(super) async fn list<Id: DeserializeOwned>(
        &self,
        collection: &str,
        fields: &str,
        cursor: Cursor,
    ) -> Result<Page<DirectoryObject<Id>>> {
        let (url, delta) = odata::listing_url(&self.graph_base, &self.graph_url, collection, fields, cursor)?;
        let op = Op::read(format!("list {collection}"), collection.to_owned()).listing();
        let body = self.call(&op, Method::GET, &url, None).await?;
        let page: wire::CollectionPage<Id> = parse(&op, &body)?;
        page.into_page(delta).map_err(|e| unreadable(&op, e))
    }

    /// One application, or `None` when Graph has no such object.
    pub(super) async fn read_application(&self, id: AppObjectId) -> Result<Option<DirectoryApplication>> {
        let url = odata::application_url(&self.graph_base, id);
        let op = Op::read(format!("read application {id}"), format!("application {id}"));
        let body = match self.call(&op, Method::GET, &url, None).await {
            Ok(body) => body,
            Err(failure) if failure.status == 404 => return Ok(None),
            Err(failure) => return Err(failure.into()),
        };
        let object: wire::ObjectJson<AppObjectId> = parse(&op, &body)?;
        object.into_object(false).map(Some).map_err(|e| unreadable(&op, e))
    }

    /// Every application whose display name is exactly `name`, all pages followed.
    pub(super) async fn find_applications_named(&self, name: &str) -> Result<Vec<DirectoryApplication>> {
        let mut url = odata::applications_named_url(&self.graph_base, name);
        let op = Op::read("find applications by display name".to_owned(), "applications".to_owned());
        let mut found = Vec::new();
        loop {
            let body = self.call(&op, Method::GET, &url, None).await?;
            let page: wire::CollectionPage<AppObjectId> = parse(&op, &body)?;
            let page = page.into_page(false).map_err(|e| unreadable(&op, e))?;
            // Graph compares display names without regard to case; the port promises an exact match.
            found.extend(page.items.into_iter().filter(|a| a.display_name.as_deref() == Some(name)));
            match page.next_link {
                Some(next) => {
                    odata::check_link(&next, &self.graph_url)?;
                    url = next;
                }
                None => return Ok(found),
            }
        }
    }
}
