//! stub
pub struct FileTask; pub struct WriteOutcome; #[derive(Debug)] pub struct WriteError;
pub fn write_secret() {}
