//! `docs/protocol.md` holds the one table of close codes and error codes, grouped by what a
//! client should do. This test keeps it in step with `signalbox_core::codes`.

use std::collections::HashMap;

use signalbox_core::{ClientAction, CloseCode, ErrorCode};

/// Reads the rows of each `### Action` table under the `## {chapter}` heading.
fn tables(doc: &str, chapter: &str) -> HashMap<String, ClientAction> {
    let start = doc.find(&format!("## {chapter}")).unwrap_or_else(|| panic!("no '## {chapter}' in protocol.md"));
    let rest = &doc[start + chapter.len() + 3..];
    let section = rest.find("\n## ").map_or(rest, |end| &rest[..end]);
    let mut rows = HashMap::new();
    let mut action = None;
    for line in section.lines() {
        if let Some(heading) = line.strip_prefix("### ") {
            action = Some(match heading.split(' ').next().unwrap_or_default() {
                "Retry" => ClientAction::Retry,
                "Reconnect" => ClientAction::ReconnectNow,
                "Re-authenticate" => ClientAction::Reauthenticate,
                "Give" => ClientAction::GiveUp,
                other => panic!("unknown action heading {other:?}"),
            });
        } else if let Some(row) = line.strip_prefix("| ") {
            let key = row.split(" |").next().unwrap_or_default().trim().trim_matches('`').to_owned();
            if key != "code" && !key.starts_with('-') {
                let previous = rows.insert(key.clone(), action.expect("a table under an action heading"));
                assert!(previous.is_none(), "{key} listed twice");
            }
        }
    }
    rows
}

fn doc() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/protocol.md")).expect("docs/protocol.md")
}

#[test]
fn every_close_code_is_documented_under_its_action() {
    let rows = tables(&doc(), "Close codes");
    for code in CloseCode::ALL {
        let documented =
            rows.get(&code.code().to_string()).unwrap_or_else(|| panic!("{code:?} missing from protocol.md"));
        assert_eq!(*documented, code.action(), "{code:?}");
    }
    assert_eq!(rows.len(), CloseCode::ALL.len(), "protocol.md lists a close code the server does not use");
}

#[test]
fn every_error_code_is_documented_under_its_action() {
    let rows = tables(&doc(), "Error codes");
    for code in ErrorCode::ALL {
        let documented = rows.get(code.as_str()).unwrap_or_else(|| panic!("{code:?} missing from protocol.md"));
        assert_eq!(*documented, code.action(), "{code:?}");
    }
    assert_eq!(rows.len(), ErrorCode::ALL.len(), "protocol.md lists an error code the server does not use");
}

#[test]
fn every_recovery_reason_is_documented() {
    use signalbox_core::RecoveryFailure;
    let doc = doc();
    let start = doc.find("| `recovered` | `reason` |").expect("the recovery table in protocol.md");
    let table: Vec<&str> = doc[start..].lines().take_while(|l| l.starts_with('|')).collect();
    let documented: Vec<&str> = table
        .iter()
        .filter_map(|row| row.split('|').nth(2))
        .map(|cell| cell.trim().trim_matches('`'))
        .filter(|code| !code.is_empty() && *code != "reason" && *code != "—" && !code.starts_with('-'))
        .collect();
    for reason in RecoveryFailure::ALL {
        assert!(documented.contains(&reason.as_str()), "{reason} missing from protocol.md");
    }
    assert_eq!(documented.len(), RecoveryFailure::ALL.len(), "protocol.md lists a reason the server does not use");
}
