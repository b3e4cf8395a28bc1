use super::*;

const TIMEOUT: Duration = Duration::from_secs(6);

fn live(nodes: &[&str]) -> Vec<String> {
    nodes.iter().map(|node| node.to_string()).collect()
}

fn log_of(users: &[&str]) -> PresenceLog {
    PresenceLog { first: 0, users: users.iter().map(|user| Arc::from(*user)).collect() }
}

#[test]
fn a_silent_node_is_waited_for_once_then_not_until_it_answers() {
    let mut book = FenceBook::new(TIMEOUT);
    let start = Instant::now();
    let waited = book.begin_round(1, 1, start, &live(&["n2", "n3"]));
    assert_eq!(waited.get("n2"), Some(&(start + PATIENCE_FLOOR)));
    assert_eq!(book.on_answer("n3", 30, 1, start), None);
    book.release(1, false);
    let waited = book.begin_round(2, 3, start, &live(&["n2", "n3"]));
    assert_eq!(waited.keys().collect::<Vec<_>>(), ["n3"], "n2 left round 1 unanswered");
    assert_eq!(book.on_answer("n3", 30, 2, start), None, "n3 answered every round in time");
    book.release(3, false);
    // n2 was only slow: its answers come, in order. Round 1's logins (before mark 1) and round
    // 2's (before mark 3) went on without it: each answer repairs what it confirms.
    let late = start + Duration::from_millis(2500);
    assert_eq!(book.on_answer("n2", 20, 1, late), Some(Repair { node: "n2".into(), from: 0, to: 1 }));
    assert_eq!(book.on_answer("n2", 20, 2, late), Some(Repair { node: "n2".into(), from: 1, to: 3 }));
    let waited = book.begin_round(3, 4, late, &live(&["n2", "n3"]));
    assert_eq!(waited.get("n2"), Some(&(late + Duration::from_secs(5))), "patience: twice its last answer's time");
    assert_eq!(book.on_answer("n2", 20, 3, late), None, "waited for: nothing to repair");
    assert_eq!(book.on_answer("n3", 30, 3, late), None);
    book.release(4, false);
    assert_eq!(book.oldest_needed(), 4);
}

#[test]
fn a_dead_or_departed_node_owes_nothing_and_a_cut_link_repairs_at_once() {
    let mut book = FenceBook::new(TIMEOUT);
    let now = Instant::now();
    book.begin_round(1, 2, now, &live(&["n2", "n3"]));
    book.release(2, false);
    assert_eq!(book.oldest_needed(), 0, "the repair needs the log from the start");
    book.on_gone("n2");
    assert_eq!(book.on_link_restored("n3", 30), Some(Repair { node: "n3".into(), from: 0, to: 2 }));
    assert_eq!(book.oldest_needed(), 2);
    // A round that let logins go because this node's own link failed owes no repair: this node
    // asks all its clients to resume.
    book.begin_round(2, 5, now, &live(&["n3"]));
    book.release(5, true);
    assert_eq!(book.on_link_restored("n3", 30), None);
}

#[test]
fn an_answer_of_a_new_start_does_not_repair_for_the_old_one() {
    let mut book = FenceBook::new(TIMEOUT);
    let now = Instant::now();
    book.begin_round(1, 1, now, &live(&["n2"]));
    assert_eq!(book.on_answer("n2", 1, 1, now), None);
    book.begin_round(2, 3, now, &live(&["n2"]));
    book.release(3, false);
    assert_eq!(book.on_answer("n2", 2, 2, now), None, "another incarnation answered");
}

#[test]
fn the_log_gives_the_users_of_a_span_once_or_nothing_once_trimmed() {
    let mut log = log_of(&["a", "b", "a", "c"]);
    let users: Vec<String> = log.users_between(0, 3).unwrap().iter().map(|user| user.to_string()).collect();
    assert_eq!(users, ["a", "b"]);
    log.trim_below(2);
    assert_eq!(log.first, 2);
    assert!(log.users_between(1, 4).is_none(), "user b is gone from the log");
    assert_eq!(log.users_between(2, 9).unwrap().len(), 2);
}
