//! The server's frames are JSON objects with `type` first (`{"type":"message",...}`). These
//! helpers look at the raw text, without building a JSON value, for the few fields the load
//! scenarios need.

/// The value of the first `"type"` field.
pub fn kind(frame: &str) -> Option<&str> {
    str_field(frame, "\"type\":\"")
}

/// The string after `key` (which ends with the opening quote, e.g. `"code":"`), up to the next
/// quote; escapes are not decoded.
pub fn str_field<'a>(frame: &'a str, key: &str) -> Option<&'a str> {
    let start = frame.find(key)? + key.len();
    let len = frame[start..].find('"')?;
    Some(&frame[start..start + len])
}

/// The unsigned integer after `key` (e.g. `"ref":`), the first occurrence.
pub fn u64_field(frame: &str, key: &str) -> Option<u64> {
    let start = frame.find(key)? + key.len();
    leading_u64(&frame[start..])
}

fn leading_u64(text: &str) -> Option<u64> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    text[..digits].parse().ok()
}

/// The text of a load message: `sb <id> <seq> <sent nanos>`: `id` names the sender (a pair, a
/// sender of a room), `seq` counts its messages from 0, `sent nanos` is [`super::Clock`] time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub id: u32,
    pub seq: u32,
    pub sent_nanos: u64,
}

const PROBE_TEXT: &str = "\"text\":\"sb ";

impl Probe {
    pub fn text(&self) -> String {
        format!("sb {} {} {}", self.id, self.seq, self.sent_nanos)
    }

    /// The probe in a `message` frame's text, if it carries one.
    pub fn in_message(frame: &str) -> Option<Probe> {
        let start = frame.find(PROBE_TEXT)? + PROBE_TEXT.len();
        let text = &frame[start..];
        let text = &text[..text.find('"')?];
        let mut numbers = text.split(' ');
        let probe = Probe {
            id: numbers.next()?.parse().ok()?,
            seq: numbers.next()?.parse().ok()?,
            sent_nanos: numbers.next()?.parse().ok()?,
        };
        numbers.next().is_none().then_some(probe)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_read_without_parsing_json() {
        let ack = r#"{"type":"ack","ref":17,"conv":"dm:a:b","id":"x","seq":45,"ts":1,"duplicate":false}"#;
        assert_eq!(kind(ack), Some("ack"));
        assert_eq!(u64_field(ack, "\"ref\":"), Some(17));
        assert_eq!(u64_field(ack, "\"seq\":"), Some(45));
        let error = r#"{"type":"error","ref":3,"code":"rate_limited","message":"slow down"}"#;
        assert_eq!(str_field(error, "\"code\":\""), Some("rate_limited"));
        let probe = Probe { id: 7, seq: 12, sent_nanos: 123_456_789 };
        let message = format!(
            r#"{{"type":"message","conv":"dm:a:b","id":"x","seq":13,"from":"a","to":"b","text":"{}","ts":1}}"#,
            probe.text()
        );
        assert_eq!(kind(&message), Some("message"));
        assert_eq!(Probe::in_message(&message), Some(probe));
        assert_eq!(u64_field(&message, "\"seq\":"), Some(13));
        assert_eq!(Probe::in_message(r#"{"type":"message","text":"sb 1 2"}"#), None);
        assert_eq!(Probe::in_message(r#"{"type":"message","text":"hello"}"#), None);
    }
}
