//! What the user types: slash commands and plain lines, parsed without I/O.

use std::fmt;

/// Who a message goes to: a user (the private conversation with them) or a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    User(String),
    Room(String),
}

impl Target {
    /// `room:lobby` (or `#lobby`) is a room, anything else a user. Names are normalised the way the
    /// server does it (trimmed, ASCII-lowercased), so that they compare with the server's.
    pub fn parse(text: &str) -> Option<Target> {
        let text = text.trim();
        let target = if let Some(room) = text.strip_prefix("room:").or_else(|| text.strip_prefix('#')) {
            Target::Room(normalise(room))
        } else {
            Target::User(normalise(text))
        };
        (!target.name().is_empty()).then_some(target)
    }

    /// A room name as given to `/say`, `/join` or `/leave`, with or without `room:` or `#`.
    pub fn room(text: &str) -> Option<Target> {
        let text = text.trim();
        let name = normalise(text.strip_prefix("room:").or_else(|| text.strip_prefix('#')).unwrap_or(text));
        (!name.is_empty()).then_some(Target::Room(name))
    }

    pub fn name(&self) -> &str {
        match self {
            Target::User(name) | Target::Room(name) => name,
        }
    }

    /// Adds `to` or `room` to a request frame.
    pub fn apply(&self, frame: &mut serde_json::Value) {
        match self {
            Target::User(name) => frame["to"] = name.as_str().into(),
            Target::Room(name) => frame["room"] = name.as_str().into(),
        }
    }

    /// The conversation id this target means for `me`.
    pub fn conv(&self, me: &str) -> String {
        match self {
            Target::User(name) if name.as_str() < me => format!("dm:{name}:{me}"),
            Target::User(name) => format!("dm:{me}:{name}"),
            Target::Room(name) => format!("room:{name}"),
        }
    }

    /// The target behind a conversation id, seen by `me`.
    pub fn of_conv(conv: &str, me: &str) -> Option<Target> {
        if let Some(room) = conv.strip_prefix("room:") {
            return Some(Target::Room(room.to_owned()));
        }
        let (a, b) = conv.strip_prefix("dm:")?.split_once(':')?;
        Some(Target::User(if a == me { b } else { a }.to_owned()))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::User(name) => f.write_str(name),
            Target::Room(name) => write!(f, "room:{name}"),
        }
    }
}

fn normalise(name: &str) -> String {
    name.trim().to_ascii_lowercase()
}

/// One line typed at the prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Send a message (a plain line, `/chat`, `/msg`, `/say`).
    Send {
        target: Target,
        text: String,
    },
    /// Make a conversation the current one without sending (`/chat bob`).
    Switch(Target),
    /// `/reply [@user] [text]`: answer the newest private message received (from `user`, if
    /// given). The client knows who sent it: it turns this into a send or a switch.
    Reply {
        from: Option<String>,
        text: String,
    },
    Join(String),
    /// `/create #room [private]`: a new room, invite-only when private.
    Create {
        room: String,
        private: bool,
    },
    Leave(String),
    Rooms,
    /// List the users whose name starts with this ("" for all).
    Users(String),
    Online,
    Members(String),
    Conversations,
    History {
        target: Target,
        limit: u32,
    },
    Stats(String),
    /// Hear when this user comes online or goes offline (`/watch`).
    Watch(String),
    Popular(u32),
    Whoami,
    /// A moderation request (`invite`, `remove`, `ban`...) on `user` in `room`.
    Moderate {
        action: &'static str,
        user: String,
        room: String,
    },
    Block(String),
    Unblock(String),
    Blocked,
    Help,
    Logout,
    Quit,
    /// An empty line: nothing to do.
    Nothing,
    /// A plain line with no current conversation.
    NoConversation,
    /// A known command used wrongly: its usage line.
    Usage(&'static str),
    /// An unknown command (the word typed).
    Unknown(String),
    /// `/edit`, `/delete`, `/quote` or `/react` on message `#seq` of the current conversation.
    Change {
        target: Target,
        seq: u64,
        change: Change,
    },
}

/// What `/edit`, `/delete`, `/quote` and `/react` do to a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Edit(String),
    Delete,
    /// A reply quoting the message.
    Quote(String),
    /// An emoji; "" takes one's reaction back.
    React(String),
}

impl Change {
    /// The request frame for message `seq` in `target`.
    pub fn frame(&self, target: &Target, seq: u64) -> serde_json::Value {
        let mut frame = match self {
            Change::Edit(text) => serde_json::json!({"type": "edit", "seq": seq, "text": text}),
            Change::Delete => serde_json::json!({"type": "delete", "seq": seq}),
            Change::Quote(text) => serde_json::json!({"type": "send", "reply_to": seq, "text": text}),
            Change::React(emoji) => serde_json::json!({"type": "react", "seq": seq, "emoji": emoji}),
        };
        target.apply(&mut frame);
        frame
    }

    /// The command, for messages about it.
    pub fn command(&self) -> &'static str {
        match self {
            Change::Edit(_) => "/edit",
            Change::Delete => "/delete",
            Change::Quote(_) => "/quote",
            Change::React(_) => "/react",
        }
    }
}

/// The default and the largest `n` of `/history`.
pub const HISTORY_DEFAULT: u32 = 20;
pub const HISTORY_MAX: u32 = 200;

/// The help text.
pub const HELP: &[(&str, &str)] = &[
    ("/chat <user> [text]", "message a user (and make it the current conversation)"),
    ("/chat room:<room> [text]", "message a room you are in"),
    ("/msg <user> [text]", "same as /chat <user>"),
    ("/say <room> [text]", "same as /chat room:<room>"),
    ("text", "a line without a command goes to the conversation the prompt names"),
    ("/reply [text]", "answer the newest private message received (and make it current)"),
    ("/reply @<user> [text]", "answer the newest private message from user"),
    ("/join <room>", "join (or create) a room and show its recent messages"),
    ("/create <room> [private]", "create a room (private: invite-only, hidden from others) and join it"),
    ("/leave [room]", "leave a room (default: the current one)"),
    ("/invite <user> [room]", "owner, moderators: make a user a member (default: the current room)"),
    ("/kick <user> [room]", "owner, moderators: take a member out of a room"),
    ("/ban <user> [room]", "owner, moderators: take a user out and keep them out; /unban lifts it"),
    ("/mute <user> [room]", "owner, moderators: the user reads but cannot send; /unmute undoes it"),
    ("/mod <user> [room]", "owner: make a member a moderator; /unmod makes them a member again"),
    ("/block <user>", "receive no private messages from a user; /unblock undoes it"),
    ("/blocked", "the users you block"),
    ("/rooms", "list the rooms"),
    ("/members [room]", "list a room's members"),
    ("/users [prefix]", "list the users (whose name starts with prefix)"),
    ("/online", "list your contacts (and watched users) online"),
    ("/edit <#n> <text>", "change the text of your message #n (the number shown before it)"),
    ("/delete <#n>", "delete your message #n (in a room you own: anyone's)"),
    ("/quote <#n> <text>", "answer message #n, quoting it"),
    ("/react <#n> [emoji]", "react to message #n (another emoji replaces yours; none takes it back)"),
    ("/conversations", "your conversations, with unread counts"),
    ("/history [user|room:<room>] [n]", "the last n messages (default 20, at most 200)"),
    ("/stats <user>", "whether a user is online, for how long, on which node"),
    ("/watch <user>", "be told when a user (not a contact) comes online or goes offline"),
    ("/popular [n]", "the most used words in rooms in the last minute"),
    ("/whoami", "who and where you are connected"),
    ("/logout", "end the session (forget the saved token) and quit"),
    ("/quit", "quit (also Ctrl-D); the session is kept for next time"),
    ("Ctrl-C", "clear the line being typed (Up brings it back); on an empty line, quit"),
    ("//text", "send a line that starts with /"),
];

/// Parses one line. `current` is the conversation a plain line goes to.
pub fn parse(line: &str, current: Option<&Target>) -> Command {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() {
        return Command::Nothing;
    }
    let Some(rest) = line.strip_prefix('/') else {
        return plain(line, current);
    };
    if rest.starts_with('/') {
        return plain(rest, current);
    }
    let (word, args) = match rest.split_once(char::is_whitespace) {
        Some((word, args)) => (word, args.trim_start()),
        None => (rest, ""),
    };
    let (first, after_first) = match args.split_once(char::is_whitespace) {
        Some((first, after)) => (first, after.trim_start()),
        None => (args, ""),
    };
    let word = word.to_ascii_lowercase();
    match word.as_str() {
        "chat" | "msg" | "m" | "query" | "say" => {
            let usage = match word.as_str() {
                "say" => "/say <room> [text]",
                "chat" => "/chat <user|room:room> [text]",
                _ => "/msg <user> [text]",
            };
            let target = if word == "say" { Target::room(first) } else { Target::parse(first) };
            match target {
                None => Command::Usage(usage),
                Some(target) if after_first.trim().is_empty() => Command::Switch(target),
                Some(target) => Command::Send { target, text: after_first.to_owned() },
            }
        }
        "reply" | "r" => match first.strip_prefix('@') {
            Some(user) if normalise(user).is_empty() => Command::Usage("/reply [@user] [text]"),
            Some(user) => Command::Reply { from: Some(normalise(user)), text: after_first.to_owned() },
            None => Command::Reply { from: None, text: args.to_owned() },
        },
        "join" | "j" => match Target::room(args) {
            Some(room) if !args.contains(char::is_whitespace) => Command::Join(room.name().to_owned()),
            _ => Command::Usage("/join <room>"),
        },
        "leave" | "part" => match (Target::room(args), current) {
            (Some(room), _) if !args.contains(char::is_whitespace) => Command::Leave(room.name().to_owned()),
            (None, Some(Target::Room(room))) => Command::Leave(room.clone()),
            _ => Command::Usage("/leave <room>"),
        },
        "members" | "names" => match (Target::room(args), current) {
            (Some(room), _) if !args.contains(char::is_whitespace) => Command::Members(room.name().to_owned()),
            (None, Some(Target::Room(room))) => Command::Members(room.clone()),
            _ => Command::Usage("/members <room>"),
        },
        "history" | "h" => history(first, after_first, current),
        "edit" | "delete" | "del" | "quote" | "react" => change(&word, first, after_first, current),
        "create" => match Target::room(first) {
            Some(room) if after_first.is_empty() || after_first == "private" => {
                Command::Create { room: room.name().to_owned(), private: after_first == "private" }
            }
            _ => Command::Usage("/create <room> [private]"),
        },
        "invite" | "kick" | "remove" | "ban" | "unban" | "mute" | "unmute" | "mod" | "op" | "unmod" | "deop" => {
            moderate(&word, first, after_first, current)
        }
        "block" | "unblock" => match Target::parse(args) {
            Some(Target::User(user)) if !args.contains(char::is_whitespace) => {
                if word == "block" {
                    Command::Block(user)
                } else {
                    Command::Unblock(user)
                }
            }
            _ => Command::Usage(if word == "block" { "/block <user>" } else { "/unblock <user>" }),
        },
        "blocked" if args.is_empty() => Command::Blocked,
        "blocked" => Command::Usage("/blocked"),
        "stats" => match Target::parse(args) {
            Some(Target::User(user)) if !args.contains(char::is_whitespace) => Command::Stats(user),
            _ => Command::Usage("/stats <user>"),
        },
        "watch" => match Target::parse(args) {
            Some(Target::User(user)) if !args.contains(char::is_whitespace) => Command::Watch(user),
            _ => Command::Usage("/watch <user>"),
        },
        "popular" => match number(args, 10, 100) {
            Some(n) => Command::Popular(n),
            None => Command::Usage("/popular [n]"),
        },
        "rooms" | "list" if args.is_empty() => Command::Rooms,
        "users" if !args.contains(char::is_whitespace) => Command::Users(args.to_lowercase()),
        "online" | "who" if args.is_empty() => Command::Online,
        "conversations" | "convs" | "unread" if args.is_empty() => Command::Conversations,
        "whoami" if args.is_empty() => Command::Whoami,
        "help" | "?" => Command::Help,
        "logout" if args.is_empty() => Command::Logout,
        "quit" | "exit" | "q" => Command::Quit,
        "rooms" | "list" => Command::Usage("/rooms"),
        "users" => Command::Usage("/users [prefix]"),
        "online" | "who" => Command::Usage("/online"),
        "conversations" | "convs" | "unread" => Command::Usage("/conversations"),
        "whoami" => Command::Usage("/whoami"),
        "logout" => Command::Usage("/logout"),
        _ => Command::Unknown(format!("/{word}")),
    }
}

fn plain(text: &str, current: Option<&Target>) -> Command {
    match current {
        Some(target) => Command::Send { target: target.clone(), text: text.to_owned() },
        None => Command::NoConversation,
    }
}

/// `/edit N text`, `/delete N`, `/quote N text`, `/react N [emoji]`, on the current conversation;
/// N is a message's seq, with or without `#`.
fn change(word: &str, first: &str, rest: &str, current: Option<&Target>) -> Command {
    let (usage, change) = match word {
        "edit" => ("/edit <#n> <text>", (!rest.trim().is_empty()).then(|| Change::Edit(rest.to_owned()))),
        "quote" => ("/quote <#n> <text>", (!rest.trim().is_empty()).then(|| Change::Quote(rest.to_owned()))),
        "react" => {
            ("/react <#n> [emoji]", (!rest.contains(char::is_whitespace)).then(|| Change::React(rest.to_owned())))
        }
        _ => ("/delete <#n>", rest.is_empty().then_some(Change::Delete)),
    };
    let seq = first.strip_prefix('#').unwrap_or(first).parse::<u64>().ok().filter(|&seq| seq > 0);
    match (seq, change, current) {
        (Some(seq), Some(change), Some(target)) => Command::Change { target: target.clone(), seq, change },
        (Some(_), Some(_), None) => Command::NoConversation,
        _ => Command::Usage(usage),
    }
}

/// `/kick <user> [room]` and the like: the room defaults to the current one.
fn moderate(word: &str, user: &str, room: &str, current: Option<&Target>) -> Command {
    let (action, usage) = match word {
        "invite" => ("invite", "/invite <user> [room]"),
        "kick" | "remove" => ("remove", "/kick <user> [room]"),
        "ban" => ("ban", "/ban <user> [room]"),
        "unban" => ("unban", "/unban <user> [room]"),
        "mute" => ("mute", "/mute <user> [room]"),
        "unmute" => ("unmute", "/unmute <user> [room]"),
        "mod" | "op" => ("promote", "/mod <user> [room]"),
        _ => ("demote", "/unmod <user> [room]"),
    };
    let room = match (Target::room(room), current) {
        (Some(room), _) if !room.name().contains(char::is_whitespace) => Some(room.name().to_owned()),
        (None, Some(Target::Room(room))) => Some(room.clone()),
        _ => None,
    };
    match (Target::parse(user), room) {
        (Some(Target::User(user)), Some(room)) => Command::Moderate { action, user, room },
        _ => Command::Usage(usage),
    }
}

/// `/history [target] [n]`: the target defaults to the current conversation.
fn history(first: &str, rest: &str, current: Option<&Target>) -> Command {
    const USAGE: &str = "/history [user|room:room] [n]";
    let (target, count) = if first.is_empty() {
        (current.cloned(), "")
    } else if first.parse::<u32>().is_ok() && rest.is_empty() {
        (current.cloned(), first)
    } else {
        (Target::parse(first), rest)
    };
    match (target, number(count, HISTORY_DEFAULT, HISTORY_MAX)) {
        (Some(target), Some(limit)) => Command::History { target, limit },
        _ => Command::Usage(USAGE),
    }
}

/// An optional count: `default` when empty, clamped to `1..=max`; `None` if not a number.
fn number(text: &str, default: u32, max: u32) -> Option<u32> {
    let text = text.trim();
    if text.is_empty() {
        return Some(default);
    }
    text.parse::<u32>().ok().map(|n| n.clamp(1, max))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> Target {
        Target::User(name.into())
    }

    fn room(name: &str) -> Target {
        Target::Room(name.into())
    }

    #[test]
    fn chat_msg_and_say_send_and_switch() {
        assert_eq!(parse("/chat bob hi there", None), Command::Send { target: user("bob"), text: "hi there".into() });
        assert_eq!(parse("/chat room:Lobby hi", None), Command::Send { target: room("lobby"), text: "hi".into() });
        assert_eq!(parse("/msg Bob  hi", None), Command::Send { target: user("bob"), text: "hi".into() });
        assert_eq!(parse("/say lobby hi", None), Command::Send { target: room("lobby"), text: "hi".into() });
        assert_eq!(parse("/say room:lobby hi", None), Command::Send { target: room("lobby"), text: "hi".into() });
        assert_eq!(parse("/chat bob", None), Command::Switch(user("bob")));
        assert_eq!(parse("/chat", None), Command::Usage("/chat <user|room:room> [text]"));
    }

    #[test]
    fn a_plain_line_goes_to_the_current_conversation() {
        assert_eq!(parse("hello", Some(&room("lobby"))), Command::Send { target: room("lobby"), text: "hello".into() });
        assert_eq!(parse("hello", None), Command::NoConversation);
        assert_eq!(parse("//slash", Some(&user("bob"))), Command::Send { target: user("bob"), text: "/slash".into() });
        assert_eq!(parse("   ", Some(&user("bob"))), Command::Nothing);
    }

    #[test]
    fn reply_answers_the_newest_private_message_or_a_given_sender() {
        assert_eq!(parse("/reply", None), Command::Reply { from: None, text: String::new() });
        assert_eq!(parse("/reply sure, 8", None), Command::Reply { from: None, text: "sure, 8".into() });
        assert_eq!(parse("/r @Bob  ok", None), Command::Reply { from: Some("bob".into()), text: "ok".into() });
        assert_eq!(parse("/reply @carol", None), Command::Reply { from: Some("carol".into()), text: String::new() });
        assert_eq!(parse("/reply @ hi", None), Command::Usage("/reply [@user] [text]"));
    }

    #[test]
    fn room_commands() {
        assert_eq!(parse("/join Lobby", None), Command::Join("lobby".into()));
        assert_eq!(parse("/join", None), Command::Usage("/join <room>"));
        assert_eq!(parse("/join a b", None), Command::Usage("/join <room>"));
        assert_eq!(parse("/leave room:lobby", None), Command::Leave("lobby".into()));
        assert_eq!(parse("/leave", Some(&room("x"))), Command::Leave("x".into()));
        assert_eq!(parse("/leave", Some(&user("bob"))), Command::Usage("/leave <room>"));
        assert_eq!(parse("/rooms", None), Command::Rooms);
    }

    #[test]
    fn moderation_and_blocking_commands() {
        assert_eq!(parse("/create #Council private", None), Command::Create { room: "council".into(), private: true });
        assert_eq!(parse("/create lobby", None), Command::Create { room: "lobby".into(), private: false });
        assert_eq!(parse("/create lobby secret", None), Command::Usage("/create <room> [private]"));
        let kick = Command::Moderate { action: "remove", user: "bob".into(), room: "lobby".into() };
        assert_eq!(parse("/kick Bob #lobby", None), kick);
        assert_eq!(parse("/kick bob", Some(&room("lobby"))), kick);
        assert_eq!(parse("/kick bob", Some(&user("carol"))), Command::Usage("/kick <user> [room]"));
        assert_eq!(
            parse("/mod bob room:lobby", None),
            Command::Moderate { action: "promote", user: "bob".into(), room: "lobby".into() }
        );
        assert_eq!(parse("/block Eve", None), Command::Block("eve".into()));
        assert_eq!(parse("/unblock eve", None), Command::Unblock("eve".into()));
        assert_eq!(parse("/blocked", None), Command::Blocked);
        assert_eq!(parse("/block", None), Command::Usage("/block <user>"));
    }

    #[test]
    fn history_takes_an_optional_target_and_count() {
        assert_eq!(parse("/history bob 5", None), Command::History { target: user("bob"), limit: 5 });
        assert_eq!(parse("/history room:lobby", None), Command::History { target: room("lobby"), limit: 20 });
        assert_eq!(parse("/history 7", Some(&user("bob"))), Command::History { target: user("bob"), limit: 7 });
        assert_eq!(parse("/history bob 5000", None), Command::History { target: user("bob"), limit: 200 });
        assert_eq!(parse("/history", None), Command::Usage("/history [user|room:room] [n]"));
        assert_eq!(parse("/history bob x", None), Command::Usage("/history [user|room:room] [n]"));
    }

    #[test]
    fn other_commands() {
        assert_eq!(parse("/stats Bob", None), Command::Stats("bob".into()));
        assert_eq!(parse("/stats", None), Command::Usage("/stats <user>"));
        assert_eq!(parse("/popular", None), Command::Popular(10));
        assert_eq!(parse("/popular 3", None), Command::Popular(3));
        assert_eq!(parse("/whoami", None), Command::Whoami);
        assert_eq!(parse("/users", None), Command::Users(String::new()));
        assert_eq!(parse("/users Bo", None), Command::Users("bo".into()));
        assert_eq!(parse("/users b o", None), Command::Usage("/users [prefix]"));
        assert_eq!(parse("/watch Bob", None), Command::Watch("bob".into()));
        assert_eq!(parse("/watch", None), Command::Usage("/watch <user>"));
        assert_eq!(parse("/quit", None), Command::Quit);
        assert_eq!(parse("/frobnicate x", None), Command::Unknown("/frobnicate".into()));
    }

    #[test]
    fn changes_name_a_message_of_the_current_conversation() {
        let lobby = room("lobby");
        let change = |seq, change| Command::Change { target: room("lobby"), seq, change };
        assert_eq!(parse("/edit #3 fixed it", Some(&lobby)), change(3, Change::Edit("fixed it".into())));
        assert_eq!(parse("/edit 3 fixed", Some(&lobby)), change(3, Change::Edit("fixed".into())));
        assert_eq!(parse("/delete #4", Some(&lobby)), change(4, Change::Delete));
        assert_eq!(parse("/quote 2 yes!", Some(&lobby)), change(2, Change::Quote("yes!".into())));
        assert_eq!(parse("/react 2 👍", Some(&lobby)), change(2, Change::React("👍".into())));
        assert_eq!(parse("/react 2", Some(&lobby)), change(2, Change::React(String::new())));
        assert_eq!(parse("/edit #3", Some(&lobby)), Command::Usage("/edit <#n> <text>"));
        assert_eq!(parse("/edit x y", Some(&lobby)), Command::Usage("/edit <#n> <text>"));
        assert_eq!(parse("/delete 4 now", Some(&lobby)), Command::Usage("/delete <#n>"));
        assert_eq!(parse("/react 2 a b", Some(&lobby)), Command::Usage("/react <#n> [emoji]"));
        assert_eq!(parse("/delete 4", None), Command::NoConversation);
        let frame = Change::Quote("yes".into()).frame(&user("bob"), 2);
        assert_eq!(frame, serde_json::json!({"type": "send", "to": "bob", "reply_to": 2, "text": "yes"}));
    }

    #[test]
    fn targets_and_conversation_ids() {
        assert_eq!(user("bob").conv("alice"), "dm:alice:bob");
        assert_eq!(user("alice").conv("bob"), "dm:alice:bob");
        assert_eq!(room("lobby").conv("alice"), "room:lobby");
        assert_eq!(Target::of_conv("dm:alice:bob", "alice"), Some(user("bob")));
        assert_eq!(Target::of_conv("dm:alice:bob", "bob"), Some(user("alice")));
        assert_eq!(Target::of_conv("dm:alice:alice", "alice"), Some(user("alice")));
        assert_eq!(Target::of_conv("room:lobby", "alice"), Some(room("lobby")));
        assert_eq!(Target::parse("#lobby"), Some(room("lobby")));
        assert_eq!(Target::parse(" "), None);
    }
}
