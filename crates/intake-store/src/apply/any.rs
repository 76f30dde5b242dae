//! The batch statements on sqlx's `Any` driver, used for SQLite databases that are not a file
//! (PostgreSQL has its own writer, `pg.rs`): multi-row statements, so a batch of 500 messages
//! costs a few round trips rather than thousands.

use std::collections::HashMap;

use intake_core::ProjectKey;
use sqlx::any::Any;
use sqlx::{AssertSqlSafe, Row, Transaction};

use super::{AttachmentRow, Incoming, LedgerOutcome, NewComment, NewTicket, TicketRow, Writer};
use crate::StoreError;

/// Bound parameters per multi-row statement (far below SQLite's 32,766 and PostgreSQL's 65,535).
const PARAMS_PER_STATEMENT: usize = 900;

pub(crate) fn rows_per_statement(cols: usize) -> usize {
    (PARAMS_PER_STATEMENT / cols).max(1)
}

/// `($offset+1, …, $offset+cols), (…)` for `rows` rows.
pub(crate) fn placeholders(rows: usize, cols: usize, offset: usize) -> String {
    (0..rows)
        .map(|r| {
            let p: Vec<String> = (1..=cols)
                .map(|c| format!("${}", offset + r * cols + c))
                .collect();
            format!("({})", p.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Statements are written with `$1…$N` in text order. On SQLite they are sent with anonymous `?`
/// parameters instead: sqlx's SQLite driver looks every *named* parameter up with
/// `sqlite3_bind_parameter_name`, a linear scan, which makes binding quadratic in the parameter
/// count; anonymous ones bind positionally. (PostgreSQL needs `$N`.) Only a statement whose
/// `$N` run exactly 1, 2, 3, … in text order is rewritten, so the meaning cannot change.
fn sql_for(conn: &sqlx::AnyConnection, sql: String) -> AssertSqlSafe<String> {
    sql_for_sqlite(conn.backend_name() == "SQLite", sql)
}

pub(crate) fn sql_for_sqlite(sqlite: bool, sql: String) -> AssertSqlSafe<String> {
    if !sqlite {
        return AssertSqlSafe(sql);
    }
    let mut out = String::with_capacity(sql.len());
    let mut expect = 1usize;
    let mut rest = sql.as_str();
    while let Some(i) = rest.find('$') {
        let digits = rest[i + 1..].bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || rest[i + 1..i + 1 + digits].parse::<usize>().ok() != Some(expect) {
            return AssertSqlSafe(sql);
        }
        out.push_str(&rest[..i]);
        out.push('?');
        expect += 1;
        rest = &rest[i + 1 + digits..];
    }
    out.push_str(rest);
    AssertSqlSafe(out)
}

/// `SELECT … WHERE … IN (…)` over a list of text values, in chunks; `sql` gets the `($1, …)`
/// list.
async fn select_in(
    tx: &mut Transaction<'_, Any>,
    sql: impl Fn(&str) -> String,
    list: &[&str],
) -> Result<Vec<sqlx::any::AnyRow>, StoreError> {
    let mut rows = Vec::new();
    for chunk in list.chunks(rows_per_statement(1)) {
        let text = sql(&placeholders(1, chunk.len(), 0));
        let mut q = sqlx::query(sql_for(tx, text));
        for v in chunk {
            q = q.bind(*v);
        }
        rows.extend(q.fetch_all(&mut **tx).await?);
    }
    Ok(rows)
}

impl Writer for Transaction<'_, Any> {
    async fn recorded(
        &mut self,
        channel: &str,
        batch: &[Incoming],
    ) -> Result<Vec<bool>, StoreError> {
        // Only in-memory SQLite databases come here: one look-up per message is cheap enough.
        let mut out = Vec::with_capacity(batch.len());
        for inc in batch {
            let env = &inc.prepared.envelope;
            let n: i64 = sqlx::query_scalar(sql_for(
                self,
                "SELECT COUNT(*) FROM message_ledger WHERE channel = $1 AND identity = $2".into(),
            ))
            .bind(channel)
            .bind(&inc.identity)
            .fetch_one(&mut **self)
            .await?;
            let mut known = n > 0;
            if !known && let Some(m) = &env.message_id {
                let n: i64 = sqlx::query_scalar(sql_for(
                    self,
                    "SELECT COUNT(*) FROM message_ledger
                     WHERE channel = $1 AND message_id = $2 AND content_hash = $3"
                        .into(),
                ))
                .bind(channel)
                .bind(m)
                .bind(&env.content_hash)
                .fetch_one(&mut **self)
                .await?;
                known = n > 0;
            }
            out.push(known);
        }
        Ok(out)
    }

    async fn ledger_ids(&mut self, n: usize) -> Result<Vec<i64>, StoreError> {
        // Only SQLite databases that are not a file come here (PostgreSQL has its own writer).
        let base: i64 = sqlx::query_scalar(super::SQLITE_LAST_LEDGER_ID_SQL)
            .fetch_one(&mut **self)
            .await?;
        Ok((1..=n as i64).map(|i| base + i).collect())
    }

    async fn insert_ledger(
        &mut self,
        channel: &str,
        rows: &[LedgerOutcome<'_>],
        ts: i64,
    ) -> Result<u64, StoreError> {
        const COLS: usize = 13;
        let mut inserted = 0;
        for chunk in rows.chunks(rows_per_statement(COLS)) {
            let sql = format!(
                "INSERT INTO message_ledger (id, channel, identity, message_id, content_hash,
                     sender, sent_at, outcome, ticket_key, reason, raw_hash, received_at,
                     processed_at) VALUES {} ON CONFLICT DO NOTHING",
                placeholders(chunk.len(), COLS, 0)
            );
            let mut q = sqlx::query(sql_for(self, sql));
            for o in chunk {
                let env = &o.inc.prepared.envelope;
                let (kind, key, reason) = o.columns();
                q = q
                    .bind(o.id)
                    .bind(channel)
                    .bind(&o.inc.identity)
                    .bind(env.message_id.as_deref())
                    .bind(&env.content_hash)
                    .bind(env.sender.as_deref())
                    .bind(env.sent_at)
                    .bind(kind)
                    .bind(key)
                    .bind(reason.map(str::to_string))
                    .bind(o.raw_hash.clone())
                    .bind(o.inc.received_at)
                    .bind(ts);
            }
            inserted += q.execute(&mut **self).await?.rows_affected();
        }
        Ok(inserted)
    }

    async fn recent(
        &mut self,
        channel: &str,
        from: i64,
        to: i64,
        senders: &[&str],
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let mut out = Vec::new();
        for chunk in senders.chunks(rows_per_statement(1)) {
            let list = placeholders(1, chunk.len(), 3);
            let sql = super::recent_sql("$1", &format!("sender IN {list}"), "$2", "$3");
            let mut q = sqlx::query(sql_for(self, sql))
                .bind(channel)
                .bind(from)
                .bind(to);
            for s in chunk {
                q = q.bind(*s);
            }
            for r in q.fetch_all(&mut **self).await? {
                out.push((r.try_get("sender")?, r.try_get("t")?));
            }
        }
        Ok(out)
    }

    async fn lock_counter(&mut self, project: &str) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "UPDATE projects SET next_number = next_number WHERE key = $1 RETURNING next_number",
        )
        .bind(project)
        .fetch_optional(&mut **self)
        .await?)
    }

    async fn set_counter(&mut self, project: &str, next: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE projects SET next_number = $1 WHERE key = $2")
            .bind(next)
            .bind(project)
            .execute(&mut **self)
            .await?;
        Ok(())
    }

    async fn threads(&mut self, refs: &[&str]) -> Result<Vec<(String, String)>, StoreError> {
        let rows = select_in(
            self,
            |list| {
                format!(
                    "SELECT message_id, ticket_key FROM message_ledger
                     WHERE ticket_key IS NOT NULL AND message_id IN {list}"
                )
            },
            refs,
        )
        .await?;
        let own = select_in(
            self,
            |list| {
                format!(
                    "SELECT message_id, ticket_key FROM outbox
                     WHERE kind = 'mail' AND ticket_key IS NOT NULL AND message_id IN {list}"
                )
            },
            refs,
        )
        .await?;
        rows.iter()
            .chain(&own)
            .map(|r| Ok((r.try_get("message_id")?, r.try_get("ticket_key")?)))
            .collect()
    }

    async fn tickets(&mut self, keys: &[String]) -> Result<Vec<TicketRow>, StoreError> {
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let rows = select_in(
            self,
            |list| {
                format!("SELECT id, key, reporter, participants FROM tickets WHERE key IN {list}")
            },
            &keys,
        )
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TicketRow {
                    id: r.try_get("id")?,
                    key: r.try_get("key")?,
                    reporter: r.try_get("reporter")?,
                    participants: r.try_get("participants")?,
                })
            })
            .collect()
    }

    async fn insert_tickets(
        &mut self,
        channel: &str,
        project: &ProjectKey,
        tickets: &[NewTicket<'_>],
        ts: i64,
    ) -> Result<Vec<i64>, StoreError> {
        let mut by_number: HashMap<i64, i64> = HashMap::new();
        for chunk in tickets.chunks(rows_per_statement(10)) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|r| {
                    let p: Vec<String> = (1..=10).map(|c| format!("${}", r * 10 + c)).collect();
                    format!(
                        "({}, {}, {}, {}, {}, {}, {}, 'open', {}, {}, {})",
                        p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9]
                    )
                })
                .collect();
            let sql = format!(
                "INSERT INTO tickets (project_key, number, key, summary, description, reporter, participants,
                     status, channel, created_at, updated_at) VALUES {} RETURNING id, number",
                rows.join(", ")
            );
            let mut q = sqlx::query(sql_for(self, sql));
            for t in chunk {
                q = q
                    .bind(project.as_str())
                    .bind(t.number)
                    .bind(t.key.as_str())
                    .bind(t.draft.summary.as_str())
                    .bind(t.draft.description.as_str())
                    .bind(t.draft.reporter.as_str())
                    .bind(super::json_list(&t.participants))
                    .bind(channel)
                    .bind(ts)
                    .bind(ts);
            }
            for row in q.fetch_all(&mut **self).await? {
                by_number.insert(row.try_get("number")?, row.try_get("id")?);
            }
        }
        tickets
            .iter()
            .map(|t| {
                by_number
                    .get(&t.number)
                    .copied()
                    .ok_or_else(|| StoreError::Corrupt(format!("no id for {}", t.key)))
            })
            .collect()
    }

    async fn touch_ticket(
        &mut self,
        id: i64,
        participants: &str,
        ts: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE tickets SET updated_at = $1, participants = $2 WHERE id = $3")
            .bind(ts)
            .bind(participants)
            .bind(id)
            .execute(&mut **self)
            .await?;
        Ok(())
    }

    async fn insert_comments(
        &mut self,
        comments: &[(i64, &NewComment<'_>)],
        ts: i64,
    ) -> Result<Vec<i64>, StoreError> {
        let mut by_ledger: HashMap<i64, i64> = HashMap::new();
        for chunk in comments.chunks(rows_per_statement(5)) {
            let sql = format!(
                "INSERT INTO comments (ticket_id, author, body, ledger_id, created_at) VALUES {} RETURNING id, ledger_id",
                placeholders(chunk.len(), 5, 0)
            );
            let mut q = sqlx::query(sql_for(self, sql));
            for (ticket, c) in chunk {
                q = q
                    .bind(*ticket)
                    .bind(c.draft.reporter.as_str())
                    .bind(c.draft.reply_text.as_str())
                    .bind(c.ledger_id)
                    .bind(ts);
            }
            for row in q.fetch_all(&mut **self).await? {
                by_ledger.insert(row.try_get("ledger_id")?, row.try_get("id")?);
            }
        }
        comments
            .iter()
            .map(|(_, c)| {
                by_ledger
                    .get(&c.ledger_id)
                    .copied()
                    .ok_or_else(|| StoreError::Corrupt("comment without id".into()))
            })
            .collect()
    }

    async fn put_blobs(&mut self, blobs: &[(&str, &[u8])]) -> Result<(), StoreError> {
        // Statements of bounded size: at most 8 MiB of data each.
        let mut start = 0;
        while start < blobs.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < blobs.len()
                && (end == start
                    || (bytes + blobs[end].1.len() < 8 << 20
                        && end - start < rows_per_statement(3)))
            {
                bytes += blobs[end].1.len();
                end += 1;
            }
            let chunk = &blobs[start..end];
            let sql = format!(
                "INSERT INTO blobs (hash, size, data) VALUES {} ON CONFLICT (hash) DO NOTHING",
                placeholders(chunk.len(), 3, 0)
            );
            let mut q = sqlx::query(sql_for(self, sql));
            for (h, data) in chunk {
                q = q.bind(*h).bind(data.len() as i64).bind(data.to_vec());
            }
            q.execute(&mut **self).await?;
            start = end;
        }
        Ok(())
    }

    async fn insert_attachments(&mut self, rows: &[AttachmentRow<'_>]) -> Result<(), StoreError> {
        for chunk in rows.chunks(rows_per_statement(8)) {
            let sql = format!(
                "INSERT INTO attachments (ticket_id, comment_id, filename, content_type, content_id, inline,
                     size, blob_hash) VALUES {}",
                placeholders(chunk.len(), 8, 0)
            );
            let mut q = sqlx::query(sql_for(self, sql));
            for (ticket, comment, a) in chunk {
                q = q
                    .bind(*ticket)
                    .bind(*comment)
                    .bind(a.filename.as_str())
                    .bind(a.content_type.as_str())
                    .bind(a.content_id.as_deref())
                    .bind(i64::from(a.inline))
                    .bind(a.data.len() as i64)
                    .bind(a.hash.as_str());
            }
            q.execute(&mut **self).await?;
        }
        Ok(())
    }

    async fn upsert_customers(
        &mut self,
        customers: &HashMap<String, Option<String>>,
        ts: i64,
    ) -> Result<(), StoreError> {
        let all: Vec<(&String, &Option<String>)> = customers.iter().collect();
        for chunk in all.chunks(rows_per_statement(4)) {
            let sql = format!(
                "INSERT INTO customers (address, display_name, first_seen, last_seen) VALUES {}
                 ON CONFLICT (address) DO UPDATE SET last_seen = excluded.last_seen,
                     display_name = COALESCE(excluded.display_name, customers.display_name)",
                placeholders(chunk.len(), 4, 0)
            );
            let mut q = sqlx::query(sql_for(self, sql));
            for (address, name) in chunk {
                q = q
                    .bind(address.as_str())
                    .bind(name.as_deref())
                    .bind(ts)
                    .bind(ts);
            }
            q.execute(&mut **self).await?;
        }
        Ok(())
    }

    async fn insert_links(&mut self, links: &[(i64, i64)], ts: i64) -> Result<(), StoreError> {
        for chunk in links.chunks(rows_per_statement(3)) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|r| {
                    format!(
                        "(${}, ${}, 'follows', ${})",
                        r * 3 + 1,
                        r * 3 + 2,
                        r * 3 + 3
                    )
                })
                .collect();
            let sql = format!(
                "INSERT INTO ticket_links (ticket_id, related_id, relation, created_at) VALUES {}",
                rows.join(", ")
            );
            let mut q = sqlx::query(sql_for(self, sql));
            for (ticket, related) in chunk {
                q = q.bind(*ticket).bind(*related).bind(ts);
            }
            q.execute(&mut **self).await?;
        }
        Ok(())
    }

    async fn outbox_counts(
        &mut self,
        event: &str,
        recipients: &[&str],
        since: i64,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let mut out = Vec::new();
        for r in recipients {
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM outbox WHERE recipient = $1 AND event = $2 AND created_at > $3",
            )
            .bind(*r)
            .bind(event)
            .bind(since)
            .fetch_one(&mut **self)
            .await?;
            out.push(((*r).to_string(), n));
        }
        Ok(out)
    }

    async fn insert_outbox(
        &mut self,
        rows: &[crate::outbox::NewOutbox],
        ts: i64,
    ) -> Result<(), StoreError> {
        for r in rows {
            sqlx::query(
                "INSERT INTO outbox (kind, target, ticket_key, event, identity, message_id,
                     recipient, payload, state, attempts, next_at, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', 0, $9, $9)",
            )
            .bind(r.kind.as_str())
            .bind(&r.target)
            .bind(r.ticket_key.as_deref())
            .bind(&r.event)
            .bind(&r.identity)
            .bind(r.message_id.as_deref())
            .bind(r.recipient.as_deref())
            .bind(&r.payload)
            .bind(ts)
            .execute(&mut **self)
            .await?;
        }
        Ok(())
    }

    async fn set_aside(&mut self, id: i64, ts: i64) -> Result<bool, StoreError> {
        Ok(sqlx::query(super::SET_ASIDE_SQL)
            .bind(id)
            .bind(ts)
            .execute(&mut **self)
            .await?
            .rows_affected()
            == 1)
    }

    async fn settle_retry(&mut self, id: i64, ticket_key: Option<&str>) -> Result<(), StoreError> {
        sqlx::query(super::SETTLE_RETRY_SQL)
            .bind(id)
            .bind(ticket_key.map(str::to_string))
            .execute(&mut **self)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::sql_for_sqlite;

    #[test]
    fn only_strictly_sequential_placeholders_become_anonymous() {
        let s = |q: &str| sql_for_sqlite(true, q.to_string()).0;
        assert_eq!(s("SELECT $1, $2 WHERE x = $3"), "SELECT ?, ? WHERE x = ?");
        assert_eq!(
            s("SELECT $1, $1"),
            "SELECT $1, $1",
            "reused parameters keep their numbers"
        );
        assert_eq!(
            s("SELECT $2, $1"),
            "SELECT $2, $1",
            "out of order keeps numbers"
        );
        assert_eq!(s("SELECT $1, $10"), "SELECT $1, $10");
        assert_eq!(sql_for_sqlite(false, "SELECT $1".into()).0, "SELECT $1");
    }
}
