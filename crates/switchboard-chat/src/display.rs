//! How things look: colours (none when stdout is not a terminal or `NO_COLOR` is set), ages,
//! message lines, and making text from the network safe to print on a terminal.

use std::io::IsTerminal;

use owo_colors::{AnsiColors, OwoColorize, Style as Ansi};
use serde_json::Value;

/// Whether to colour, decided once.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    color: bool,
}

impl Style {
    /// Colours only on a terminal, and never when `NO_COLOR` is set to anything but "".
    pub fn detect() -> Style {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
        Style { color: !no_color && std::io::stdout().is_terminal() }
    }

    pub fn plain() -> Style {
        Style { color: false }
    }

    fn paint(&self, text: &str, style: Ansi) -> String {
        if self.color {
            text.style(style).to_string()
        } else {
            text.to_owned()
        }
    }

    /// A user name, in a colour of its own (bold green for yourself).
    pub fn user(&self, name: &str, me: &str) -> String {
        if name == me {
            return self.paint(name, Ansi::new().bold().green());
        }
        const PALETTE: [AnsiColors; 5] =
            [AnsiColors::Cyan, AnsiColors::Magenta, AnsiColors::Yellow, AnsiColors::Blue, AnsiColors::BrightRed];
        let hash = name.bytes().fold(5381u32, |hash, byte| hash.wrapping_mul(33) ^ u32::from(byte));
        self.paint(name, Ansi::new().bold().color(PALETTE[hash as usize % PALETTE.len()]))
    }

    /// A conversation label such as `[room:lobby]`.
    pub fn label(&self, text: &str) -> String {
        self.paint(text, Ansi::new().blue())
    }

    /// Secondary text: ages, hints.
    pub fn dim(&self, text: &str) -> String {
        self.paint(text, Ansi::new().dimmed())
    }

    /// Connection and presence notices.
    pub fn notice(&self, text: &str) -> String {
        self.paint(text, Ansi::new().yellow())
    }

    pub fn bold(&self, text: &str) -> String {
        self.paint(text, Ansi::new().bold())
    }

    /// `error: <message> (<code>)`, in red.
    pub fn error(&self, code: &str, message: &str) -> String {
        let text = if code.is_empty() { format!("error: {message}") } else { format!("error: {message} ({code})") };
        self.paint(&clean(&text), Ansi::new().red())
    }

    /// An error of the server, from its error frame.
    pub fn error_frame(&self, frame: &Value) -> String {
        self.error(str_of(frame, "code"), str_of(frame, "message"))
    }
}

pub fn str_of<'a>(frame: &'a Value, field: &str) -> &'a str {
    frame[field].as_str().unwrap_or_default()
}

/// Milliseconds since the Unix epoch, our clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// How long ago `ts` was: `just now`, `42s ago`, `2m ago`, `3h ago`, `5d ago`.
pub fn age(ts: u64, now: u64) -> String {
    let secs = now.saturating_sub(ts) / 1000;
    match secs {
        0..=4 => "just now".to_owned(),
        5..=59 => format!("{secs}s ago"),
        60..=3599 => format!("{}m ago", secs / 60),
        3600..=86_399 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86_400),
    }
}

/// `ts` (ms) as `HH:MM` in the local time zone (`TZ`, else `/etc/localtime`; UTC without either).
pub fn clock(ts: u64) -> String {
    clock_in(ts, &jiff::tz::TimeZone::system())
}

fn clock_in(ts: u64, zone: &jiff::tz::TimeZone) -> String {
    match jiff::Timestamp::from_millisecond(i64::try_from(ts).unwrap_or(i64::MAX)) {
        Ok(at) => at.to_zoned(zone.clone()).strftime("%H:%M").to_string(),
        Err(_) => "--:--".to_owned(),
    }
}

/// `1h 2m 3s`, `2m 3s` or `3s`, like the server's `online_for`.
pub fn duration(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m {s}s"),
        _ => format!("{h}h {m}m {s}s"),
    }
}

/// Text from the network made safe for a terminal: control characters (escape sequences could
/// move the cursor, recolour or retitle the terminal) become `�`, continuation lines are indented.
pub fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\n    "),
            '\t' => out.push_str("    "),
            c if c.is_control() || is_bidi_control(c) => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// Bidirectional overrides and isolates can make a line read differently from what it is.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// One message, as a line, after its local time (`HH:MM`):
/// - live: `12:04 alice: hi` (private, from the peer), `12:04 [room:lobby] alice: hi`,
///   `12:04 alice → bob: hi` (a private message of yours sent from another device);
/// - replayed (sync, history, join): the same with the age, `12:02 [room:lobby] alice (2m ago): hi`.
///
/// Each starts with the message's `#seq`, the number `/edit`, `/delete`, `/quote` and `/react`
/// take. A change to a message reads `#5 12:06 alice edited #3: new text` (see [`change_text`]);
/// a reply shows what it quotes, `[↪ #3 bob: the start of it]`; an edited message ends in
/// `(edited)`, a deleted one reads `(deleted)`, reactions follow as `[👍 2 🎉 1]`.
pub fn message_line(style: &Style, message: &Value, me: &str, replayed: Option<u64>) -> String {
    let from = clean(str_of(message, "from"));
    let text = if message["deleted"] == true { style.dim("(deleted)") } else { clean(str_of(message, "text")) };
    let ts = message["ts"].as_u64().unwrap_or_else(now_ms);
    let mut line = match message["seq"].as_u64() {
        Some(seq) => style.dim(&format!("#{seq} ")),
        None => String::new(),
    };
    line.push_str(&style.dim(&clock(ts)));
    line.push(' ');
    if let Some(kind) = message["kind"].as_str() {
        if let Some(room) = message["room"].as_str() {
            line.push_str(&style.label(&format!("[room:{}]", clean(room))));
            line.push(' ');
        }
        line.push_str(&style.user(&from, me));
        line.push(' ');
        line.push_str(&change_text(kind, message));
        return line;
    }
    if let Some(room) = message["room"].as_str() {
        line.push_str(&style.label(&format!("[room:{}]", clean(room))));
        line.push(' ');
        line.push_str(&style.user(&from, me));
    } else {
        line.push_str(&style.user(&from, me));
        let to = clean(str_of(message, "to"));
        if from == me {
            line.push_str(" → ");
            line.push_str(&style.user(&to, me));
        }
    }
    if let Some(now) = replayed {
        let ts = message["ts"].as_u64().unwrap_or(now);
        line.push(' ');
        line.push_str(&style.dim(&format!("({})", age(ts, now))));
    }
    line.push_str(": ");
    if let Some(quoted) = message["reply_to"].as_u64() {
        let reply = &message["reply"];
        let shown = if reply["deleted"] == true {
            "(deleted)".to_owned()
        } else {
            format!("{}: {}", clean(str_of(reply, "from")), clean(&str_of(reply, "text").replace('\n', " ")))
        };
        line.push_str(&style.dim(&format!("[↪ #{quoted} {shown}]")));
        line.push(' ');
    }
    line.push_str(&text);
    if message["edited_at"].is_u64() && message["deleted"] != true {
        line.push_str(&style.dim(" (edited)"));
    }
    let reactions = reactions_text(&message["reactions"]);
    if !reactions.is_empty() {
        line.push_str(&format!("  [{reactions}]"));
    }
    line
}

/// What a change entry did: `edited #3: new text`, `deleted #3`, `reacted 👍 to #3`, `took back
/// their reaction to #3`.
pub fn change_text(kind: &str, entry: &Value) -> String {
    let target = entry["target"].as_u64().unwrap_or(0);
    let text = clean(str_of(entry, "text"));
    match kind {
        "edit" => format!("edited #{target}: {text}"),
        "delete" => format!("deleted #{target}"),
        "react" if text.is_empty() => format!("took back their reaction to #{target}"),
        "react" => format!("reacted {text} to #{target}"),
        other => format!("changed #{target} ({})", clean(other)),
    }
}

/// `👍 2 🎉 1` for a message's reactions.
fn reactions_text(reactions: &Value) -> String {
    let shown: Vec<String> = reactions
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| format!("{} {}", clean(str_of(r, "emoji")), r["users"].as_array().map_or(0, Vec::len)))
        .collect();
    shown.join(" ")
}

/// How many entries after the read marker the server's unread count looks at.
const UNREAD_COUNT_SPAN: u64 = 1000;

/// One entry of `/conversations`: the name, unread count, age of the newest message and, for a
/// private conversation, whether the peer received ("delivered") or read ("seen") the newest one;
/// then the start of that message. `me` is the user, whose own message reads "you: ...".
pub fn conversation_line(conversation: &Value, now: u64, me: &str) -> String {
    let name = match conversation["room"].as_str() {
        Some(room) => format!("room:{}", clean(room)),
        None => clean(str_of(conversation, "peer")),
    };
    let last_seq = conversation["last_seq"].as_u64().unwrap_or(0);
    // The server counts the first 1000 entries after the read marker (protocol: `conversations`).
    let behind = last_seq.saturating_sub(conversation["read_seq"].as_u64().unwrap_or(0));
    let unread = conversation["unread"].as_u64().unwrap_or(0);
    let unread = if behind > UNREAD_COUNT_SPAN { format!("{unread}+") } else { unread.to_string() };
    let last = conversation["last_ts"].as_u64().filter(|&ts| ts > 0);
    let last = last.map(|ts| format!(", last message {}", age(ts, now))).unwrap_or_default();
    let reached = |field: &str| last_seq > 0 && conversation[field].as_u64().is_some_and(|seq| seq >= last_seq);
    let receipt = if reached("peer_read_seq") {
        format!(", {name} has read it all")
    } else if reached("peer_delivered_seq") {
        format!(", {name} has received it all")
    } else {
        String::new()
    };
    let preview = match conversation["last"]["text"].as_str() {
        Some(text) => {
            let from = str_of(&conversation["last"], "from");
            let from = if from == me { "you".to_owned() } else { clean(from) };
            format!(": {from}: {}", clean(&text.replace('\n', " ")))
        }
        None => String::new(),
    };
    format!("  {name} ({unread} unread{last}{receipt}){preview}")
}

/// A list of names, cut after `limit` with a count of the rest.
pub fn name_list(names: &[String], limit: usize) -> String {
    let mut text = names.iter().take(limit).map(|name| clean(name)).collect::<Vec<_>>().join(", ");
    if names.len() > limit {
        text.push_str(&format!(" and {} more", names.len() - limit));
    }
    text
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_unread_count_past_the_servers_span_reads_as_a_lower_bound() {
        let far = json!({"peer": "bob", "last_seq": 5200, "read_seq": 1200, "unread": 1000});
        assert!(conversation_line(&far, 0, "alice").contains("(1000+ unread"));
        let near = json!({"peer": "bob", "last_seq": 5200, "read_seq": 4300, "unread": 880});
        assert!(conversation_line(&near, 0, "alice").contains("(880 unread"));
    }

    #[test]
    fn ages_and_durations() {
        assert_eq!(age(1_000_000, 1_002_000), "just now");
        assert_eq!(age(1_000_000, 1_042_000), "42s ago");
        assert_eq!(age(1_000_000, 1_000_000 + 150_000), "2m ago");
        assert_eq!(age(0, 3 * 3_600_000 + 5), "3h ago");
        assert_eq!(age(0, 50 * 3_600_000), "2d ago");
        assert_eq!(age(2_000, 1_000), "just now", "a clock behind the server's");
        assert_eq!(duration(3723), "1h 2m 3s");
        assert_eq!(duration(123), "2m 3s");
        assert_eq!(duration(3), "3s");
    }

    #[test]
    fn message_lines() {
        let style = Style::plain();
        let live = json!({"conv": "dm:alice:bob", "from": "alice", "to": "bob", "text": "hi", "ts": 0});
        let at = clock(0);
        assert_eq!(message_line(&style, &live, "bob", None), format!("{at} alice: hi"));
        assert_eq!(message_line(&style, &live, "alice", None), format!("{at} alice → bob: hi"));
        let room = json!({"conv": "room:lobby", "from": "alice", "room": "lobby", "text": "hi", "ts": 1_000});
        assert_eq!(message_line(&style, &room, "bob", Some(121_000)), format!("{at} [room:lobby] alice (2m ago): hi"));
    }

    #[test]
    fn numbered_lines_show_replies_edits_deletions_and_reactions() {
        let style = Style::plain();
        let at = clock(0);
        let reply = json!({"seq": 4, "from": "bob", "to": "alice", "text": "yes", "ts": 0, "reply_to": 2,
            "reply": {"from": "alice", "text": "lunch?"}, "edited_at": 5,
            "reactions": [{"emoji": "👍", "users": ["alice", "carol"]}]});
        assert_eq!(
            message_line(&style, &reply, "alice", None),
            format!("#4 {at} bob: [↪ #2 alice: lunch?] yes (edited)  [👍 2]")
        );
        let deleted = json!({"seq": 2, "from": "alice", "to": "bob", "text": "", "ts": 0, "deleted": true});
        assert_eq!(message_line(&style, &deleted, "bob", None), format!("#2 {at} alice: (deleted)"));
        let edit =
            json!({"seq": 5, "from": "bob", "room": "lobby", "text": "yes!", "ts": 0, "kind": "edit", "target": 4});
        assert_eq!(message_line(&style, &edit, "alice", None), format!("#5 {at} [room:lobby] bob edited #4: yes!"));
        let react = json!({"seq": 6, "from": "bob", "to": "alice", "text": "", "ts": 0, "kind": "react", "target": 4});
        assert_eq!(message_line(&style, &react, "alice", None), format!("#6 {at} bob took back their reaction to #4"));
    }

    #[test]
    fn clocks_are_local() {
        let ts = 1_718_000_000_000; // 2024-06-10 06:13:20 UTC
        assert_eq!(clock_in(ts, &jiff::tz::TimeZone::UTC), "06:13");
        let plus_five = jiff::tz::TimeZone::fixed(jiff::tz::offset(5));
        assert_eq!(clock_in(ts, &plus_five), "11:13");
        assert_eq!(clock_in(u64::MAX, &plus_five), "--:--");
    }

    #[test]
    fn text_from_the_network_cannot_drive_the_terminal() {
        assert_eq!(clean("a\u{1b}[2Jb"), "a\u{fffd}[2Jb");
        assert_eq!(clean("x\u{7}\u{202e}y"), "x\u{fffd}\u{fffd}y");
        assert_eq!(clean("two\nlines"), "two\n    lines");
    }
}
