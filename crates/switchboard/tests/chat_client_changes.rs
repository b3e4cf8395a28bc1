//! The terminal client's edits, deletions, quotes and reactions, in a real pseudo-terminal
//! (harness: `chat_support`): messages show their `#seq`, `/edit`, `/delete`, `/quote` and
//! `/react` change the current conversation's message #N, and changes by others show as they
//! arrive.

mod chat_support;

use serde_json::json;

use chat_support::*;

#[tokio::test]
async fn edit_delete_quote_and_react_by_number_and_see_others_changes() {
    let (_server, _config, mut bob, mut chat) = alice_and_bob().await;
    chat.command("/chat bob lunch at noon?").await;
    let first = bob.next_of_type("message").await;
    assert_eq!((first["seq"].as_u64(), first["text"].as_str()), (Some(1), Some("lunch at noon?")));
    chat.expect("[bob]> ").await;

    // Bob's answer shows with its number, which the commands take.
    let ack = bob.request(json!({"type": "send", "to": "alice", "text": "sure"})).await;
    assert_eq!(ack["seq"], 2, "{ack}");
    chat.expect("#2 ").await;
    chat.expect("bob: sure").await;

    chat.command("/edit #1 lunch at one?").await;
    let edit = bob.next_of_type("message").await;
    assert_eq!((edit["kind"].as_str(), edit["target"].as_u64()), (Some("edit"), Some(1)), "{edit}");
    assert_eq!(edit["text"], "lunch at one?");
    chat.expect("(edited, #3)").await;

    chat.command("/react 2 👍").await;
    let react = bob.next_of_type("message").await;
    assert_eq!(react["reactions"], json!([{"emoji": "👍", "users": ["alice"]}]), "{react}");
    chat.expect("(reacted, #4)").await;

    chat.command("/quote 2 great, see you").await;
    let quote = bob.next_of_type("message").await;
    assert_eq!((quote["reply_to"].as_u64(), quote["text"].as_str()), (Some(2), Some("great, see you")));
    assert_eq!(quote["reply"]["from"], "bob");
    chat.expect("(sent, #5)").await;

    // Someone else's message cannot be edited; the server's refusal shows.
    chat.command("/edit 2 mine now").await;
    chat.expect("(not_allowed)").await;

    chat.command("/delete 1").await;
    let delete = bob.next_of_type("message").await;
    assert_eq!((delete["kind"].as_str(), delete["target"].as_u64()), (Some("delete"), Some(1)));
    chat.expect("(deleted, #6)").await;

    // Bob's changes arrive as lines of their own.
    bob.request(json!({"type": "edit", "to": "alice", "seq": 2, "text": "sure thing"})).await;
    chat.expect("bob edited #2: sure thing").await;
    bob.request(json!({"type": "react", "to": "alice", "seq": 5, "emoji": "🎉"})).await;
    chat.expect("bob reacted 🎉 to #5").await;

    // The history shows the current state: the quote, "(edited)", the tombstone, the reactions.
    chat.command("/history 20").await;
    chat.expect("#1 ").await;
    chat.expect("alice → bob (just now): (deleted)").await;
    chat.expect("bob (just now): sure thing (edited)  [👍 1]").await;
    chat.expect("alice → bob (just now): [↪ #2 bob: sure thing] great, see you  [🎉 1]").await;

    chat.command("/help").await;
    chat.expect("/quote <#n> <text>").await;
    chat.expect("/react <#n> [emoji]").await;
}
