//! `text`: the whole file is the secret, with or without one trailing newline.

use super::Edit;
use crate::SecretValue;

pub(super) fn set(text: &str, value: &SecretValue, create: bool) -> Edit {
    let secret = value.expose();
    let ending = ["\r\n", "\n"].into_iter().find(|nl| text.strip_suffix(nl) == Some(secret));
    if !create && (text == secret || ending.is_some()) {
        return Edit::Unchanged;
    }
    // Keep the old file's habit of ending with a newline; a new file holds exactly the secret.
    let nl = ["\r\n", "\n"].into_iter().find(|nl| text.ends_with(nl)).unwrap_or("");
    Edit::Changed(format!("{secret}{nl}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_whole_file_is_replaced_keeping_a_trailing_newline() {
        let v = SecretValue::new("new~secret");
        assert_eq!(set("old\n", &v, false), Edit::Changed("new~secret\n".into()));
        assert_eq!(set("old", &v, false), Edit::Changed("new~secret".into()));
        assert_eq!(set("old\r\n", &v, false), Edit::Changed("new~secret\r\n".into()));
        assert_eq!(set("", &v, true), Edit::Changed("new~secret".into()));
    }

    #[test]
    fn the_same_secret_with_or_without_newline_is_unchanged() {
        let v = SecretValue::new("new~secret");
        assert_eq!(set("new~secret", &v, false), Edit::Unchanged);
        assert_eq!(set("new~secret\n", &v, false), Edit::Unchanged);
        assert_ne!(set("new~secret\n\n", &v, false), Edit::Unchanged);
    }
}
