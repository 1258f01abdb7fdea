//! The baseline of `lambda-startup` (in `make bench`): the smallest function on `lambda_runtime`,
//! which answers every event with nothing. Each function's package size, start-up time and memory are
//! printed as a ratio to this one, measured in the same run.

use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|_: LambdaEvent<serde_json::Value>| async { Ok::<_, Error>(()) })).await
}
