//! Engine.IO v4 / Socket.IO 4 packets, as far as the load generator needs them, in two mappings
//! of the native protocol's frames:
//! - the peers' ([`super::Protocol::SocketIo`]): each frame is the one argument of a `frame`
//!   event on the default namespace, logins included;
//! - Switchboard's own ([`super::Protocol::SwitchboardSocketIo`], docs/socketio.md): the login
//!   rides in the CONNECT packet's auth, each request is an event named by its `type` with an
//!   acknowledgement that carries the answer, and every other frame is an event named by its type.
//!
//! Either way the scenarios see native frames, so that they measure the same thing on each.

/// The path and query of a Socket.IO connection over a WebSocket from the start.
pub const PATH: &str = "/socket.io/?EIO=4&transport=websocket";
/// Socket.IO CONNECT to the default namespace, without auth.
pub const CONNECT: &str = "40";
pub const PONG: &str = "3";
/// An EVENT packet named `frame`, up to its argument.
const FRAME_PREFIX: &str = "42[\"frame\",";

/// What one Engine.IO text message holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Packet {
    /// A native protocol frame: a `frame` event's argument, or for Switchboard's mapping any
    /// event's argument or an acknowledgement's.
    Frame(String),
    /// An Engine.IO ping, to be answered with [`PONG`].
    Ping,
    /// Engine.IO close (`1`), Socket.IO DISCONNECT (`41`) or CONNECT_ERROR (`44...`).
    Closed,
    /// Anything else (pongs, other events, the open and connect packets).
    Other,
}

/// Reads a packet of the peers' mapping, reusing the message's buffer for a frame.
pub fn decode(mut text: String) -> Packet {
    if text.len() > FRAME_PREFIX.len() && text.starts_with(FRAME_PREFIX) && text.ends_with(']') {
        text.truncate(text.len() - 1);
        text.drain(..FRAME_PREFIX.len());
        return Packet::Frame(text);
    }
    control(&text)
}

fn control(text: &str) -> Packet {
    match text {
        "2" => Packet::Ping,
        "1" | "41" => Packet::Closed,
        other if other.starts_with("44") => Packet::Closed,
        _ => Packet::Other,
    }
}

/// A native frame (a JSON object) as a `frame` event.
pub fn encode(frame: &str) -> String {
    let mut packet = String::with_capacity(FRAME_PREFIX.len() + frame.len() + 1);
    packet.push_str(FRAME_PREFIX);
    packet.push_str(frame);
    packet.push(']');
    packet
}

/// Reads a packet of Switchboard's mapping: `42["type",{frame}]` and `43<id>[{frame}]` both
/// carry a native frame (which names its own type).
pub fn decode_switchboard(mut text: String) -> Packet {
    let start = if let Some(event) = text.strip_prefix("42[\"") {
        // The event's name has no quote; the frame follows it.
        event.find("\",").map(|end| 4 + end + 2)
    } else if let Some(ack) = text.strip_prefix("43") {
        ack.find('[').filter(|&open| ack[..open].bytes().all(|b| b.is_ascii_digit())).map(|open| 2 + open + 1)
    } else {
        None
    };
    match start {
        Some(start) if text.len() > start && text.ends_with(']') => {
            text.truncate(text.len() - 1);
            text.drain(..start);
            Packet::Frame(text)
        }
        _ => control(&text),
    }
}

/// A native frame in Switchboard's mapping: a login becomes the CONNECT packet with its
/// credential as auth; any other request an event named by its type, asking for acknowledgement
/// `ack_id`.
pub fn encode_switchboard(frame: &str, ack_id: u64) -> String {
    let Ok(serde_json::Value::Object(mut fields)) = serde_json::from_str::<serde_json::Value>(frame) else {
        return format!("42{ack_id}[\"bad\",{frame}]");
    };
    let kind = fields.remove("type").and_then(|kind| kind.as_str().map(str::to_owned)).unwrap_or_default();
    // The handshake's auth takes the login frame's fields as they are (`jwt`, `token`,
    // `username`, `presence`, `cursors`).
    if matches!(kind.as_str(), "login_jwt" | "resume" | "login_open") {
        return format!("{CONNECT}{}", serde_json::Value::Object(fields));
    }
    format!("42{ack_id}[\"{kind}\",{}]", serde_json::Value::Object(fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_packets_wrap_native_frames() {
        let frame = r#"{"type":"send","to":"b","text":"sb 1 2 3","ref":2}"#;
        let packet = encode(frame);
        assert_eq!(packet, format!(r#"42["frame",{frame}]"#));
        assert_eq!(decode(packet), Packet::Frame(frame.to_string()));
        assert_eq!(decode("2".into()), Packet::Ping);
        assert_eq!(decode("41".into()), Packet::Closed);
        assert_eq!(decode(r#"44{"message":"no"}"#.into()), Packet::Closed);
        assert_eq!(decode("3".into()), Packet::Other);
        assert_eq!(decode(r#"42["other",{}]"#.into()), Packet::Other);
        assert_eq!(decode(r#"42["frame","#.into()), Packet::Other);
    }

    #[test]
    fn switchboard_packets_are_events_and_acknowledgements() {
        let send = encode_switchboard(r#"{"type":"send","to":"b","text":"sb 1 2 3","ref":2}"#, 7);
        assert_eq!(send, r#"427["send",{"ref":2,"text":"sb 1 2 3","to":"b"}]"#);
        let login = encode_switchboard(r#"{"type":"login_jwt","jwt":"a.b.c","presence":false}"#, 1);
        assert_eq!(login, r#"40{"jwt":"a.b.c","presence":false}"#);
        assert_eq!(encode_switchboard(r#"{"type":"resume","token":"t"}"#, 1), r#"40{"token":"t"}"#);
        let message = r#"{"type":"message","conv":"dm:a:b","seq":3,"text":"x"}"#;
        assert_eq!(decode_switchboard(format!(r#"42["message",{message}]"#)), Packet::Frame(message.into()));
        let ack = r#"{"type":"ack","ref":2,"seq":3}"#;
        assert_eq!(decode_switchboard(format!("4312[{ack}]")), Packet::Frame(ack.into()));
        assert_eq!(decode_switchboard(r#"40{"sid":"x"}"#.into()), Packet::Other);
        assert_eq!(decode_switchboard(r#"44{"message":"invalid_jwt"}"#.into()), Packet::Closed);
        assert_eq!(decode_switchboard("2".into()), Packet::Ping);
        assert_eq!(decode_switchboard("43x[{}]".into()), Packet::Other);
    }
}
