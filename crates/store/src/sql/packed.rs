//! SQLite's profile scan, packed: one row for a whole page. The driver's cost per row (a copy
//! of every value and a hand-over between threads) is most of a scan's on SQLite, so SQLite
//! concatenates the page and [`unpack_profiles`] splits it again. (PostgreSQL streams rows
//! cheaply and scans them plainly.)

use sqlx::AnyPool;
use tributary_core::{AccountId, StoredProfile};

use crate::{Result, StoreError};

pub(super) async fn scan_profiles(
    read: &AnyPool,
    aid: AccountId,
    after: i64,
    limit: u32,
) -> Result<Vec<StoredProfile>> {
    let packed: Option<String> = sqlx::query_scalar(
        "SELECT group_concat(id || ' ' || created_at || ' ' || modified_at || ' '
             || ifnull(next_check, 'n') || ' ' || length(CAST(state AS BLOB)) || ':' || state, '')
         FROM (SELECT id, created_at, modified_at, next_check, state FROM profiles
               WHERE account_id = $1 AND id > $2 ORDER BY id LIMIT $3)",
    )
    .bind(aid)
    .bind(after)
    .bind(i64::from(limit))
    .fetch_one(read)
    .await?;
    unpack_profiles(aid, packed.as_deref().unwrap_or(""))
}

/// Profiles packed by `scan_profiles`: for each, `id created modified next_check length:`
/// (`n` for no next check; `length` in bytes) and then the state itself. Returned in id order.
fn unpack_profiles(aid: AccountId, mut packed: &str) -> Result<Vec<StoredProfile>> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("profile scan: {what}"));
    let mut out = Vec::new();
    while !packed.is_empty() {
        let (header, rest) = packed
            .split_once(':')
            .ok_or_else(|| corrupt("a row without a header"))?;
        let mut fields = header.split(' ');
        let mut int = |name: &str| -> Result<Option<i64>> {
            match fields.next() {
                Some("n") => Ok(None),
                Some(text) => text
                    .parse()
                    .map(Some)
                    .map_err(|_| corrupt(&format!("{name} is {text:?}"))),
                None => Err(corrupt(&format!("no {name}"))),
            }
        };
        let id = int("id")?.ok_or_else(|| corrupt("no id"))?;
        let created_at = int("created_at")?.ok_or_else(|| corrupt("no created_at"))?;
        let modified_at = int("modified_at")?.ok_or_else(|| corrupt("no modified_at"))?;
        let next_check = int("next_check")?;
        let len = int("length")?.ok_or_else(|| corrupt("no length"))? as usize;
        let state = rest
            .get(..len)
            .ok_or_else(|| corrupt(&format!("profile {id}: state shorter than {len} bytes")))?;
        out.push(StoredProfile {
            account_id: aid,
            id,
            state: state.to_string(),
            created_at,
            modified_at,
            next_check,
        });
        packed = rest.get(len..).unwrap_or_default();
    }
    if !out.is_sorted_by_key(|p| p.id) {
        out.sort_by_key(|p| p.id);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::unpack_profiles;

    #[test]
    fn packed_profiles_unpack_whatever_their_state_holds() {
        let states = [r#"{"a":"x: 1 2"}"#, r#"{"é":"ü€"}"#, ""];
        let mut packed = String::new();
        for (i, s) in states.iter().enumerate() {
            let next = if i == 1 { "-5".to_string() } else { "n".into() };
            packed.push_str(&format!("{} 10 -20 {next} {}:{s}", i + 1, s.len()));
        }
        let ps = unpack_profiles(7, &packed).expect("unpacks");
        let got: Vec<(i64, i64, &str, Option<i64>)> = ps
            .iter()
            .map(|p| (p.account_id, p.id, p.state.as_str(), p.next_check))
            .collect();
        assert_eq!(
            got,
            vec![
                (7, 1, states[0], None),
                (7, 2, states[1], Some(-5)),
                (7, 3, states[2], None)
            ]
        );
        assert_eq!((ps[0].created_at, ps[0].modified_at), (10, -20));
    }

    #[test]
    fn damaged_packing_is_an_error() {
        for bad in [
            "1 2 3 n 99:{}",
            "1 2 3 n:{}",
            "x 2 3 n 2:{}",
            "1 2 3 n 2",
            "1 2 3 n 1:é",
        ] {
            assert!(unpack_profiles(1, bad).is_err(), "{bad:?}");
        }
    }
}
