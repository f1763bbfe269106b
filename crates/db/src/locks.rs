//! Every PostgreSQL advisory lock tronpay takes, with its key: one
//! numbering scheme (`"tronpay"` in ASCII, then one byte per lock) in one
//! place, so no two uses can collide.

use diesel::QueryResult;
use diesel::pg::Pg;
use diesel::query_builder::AstPass;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::error::DbError;
use crate::prepared::{Prepared, Statement};

/// The key prefix: `"tronpay"` in ASCII, shifted left a byte.
const PREFIX: i64 = 0x7472_6f6e_7061_7900;

/// A transaction-level advisory lock (released when the transaction ends,
/// so it works behind PgBouncer in transaction mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock<'a> {
    /// Running the migrations (`tronpay db create-tables`, the migration Job).
    Migration,
    /// The active chain scanner; the other watcher replicas stand by.
    Scanner,
    /// Storing the first webhook signing secret.
    WebhookSecret,
    /// All work on the transfers to one address (matching, reconciling).
    Address(&'a str),
}

impl Lock<'_> {
    /// The lock's key: `PREFIX + n` for the single locks; for an address,
    /// its text hashed with `PREFIX + 5` as the seed (a 64-bit hash, so two
    /// addresses sharing a key only serialise, never corrupt anything).
    pub fn key(self) -> i64 {
        match self {
            Self::Migration => PREFIX + 1,
            Self::Scanner => PREFIX + 2,
            Self::WebhookSecret => PREFIX + 3,
            Self::Address(_) => PREFIX + 5,
        }
    }

    /// Waits for the lock (`pg_advisory_xact_lock`) inside the caller's
    /// transaction.
    pub async fn take(self, conn: &mut AsyncPgConnection) -> Result<(), DbError> {
        match self {
            Self::Address(address) => {
                Prepared(AddressLock(address.to_owned())).execute(conn).await?;
            }
            single => {
                Prepared(SingleLock(single.key())).execute(conn).await?;
            }
        }
        Ok(())
    }

    /// `SELECT function(key) AS locked` for a single lock (e.g.
    /// `pg_try_advisory_xact_lock`), for callers with their own connection
    /// type.
    pub fn sql(self, function: &str) -> String {
        format!("SELECT {function}({}) AS locked", self.key())
    }
}

/// Taking a single lock, prepared once per connection.
struct SingleLock(i64);

impl Statement for SingleLock {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("SELECT pg_advisory_xact_lock(");
        out.push_bind_param::<BigInt, _>(&self.0)?;
        out.push_sql(")");
        Ok(())
    }
}

/// Taking an address's lock, prepared once per connection (it runs for
/// every transfer).
struct AddressLock(String);

impl Statement for AddressLock {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("SELECT pg_advisory_xact_lock(hashtextextended(");
        out.push_bind_param::<Text, _>(&self.0)?;
        out.push_sql(&format!(", {}))", Lock::Address("").key()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_distinct_and_keep_their_old_values() {
        let keys = [
            Lock::Migration.key(),
            Lock::Scanner.key(),
            Lock::WebhookSecret.key(),
            Lock::Address("T").key(),
        ];
        let mut sorted = keys.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), keys.len());
        // The scanner and migration keys of earlier releases: a watcher or a
        // migration of the previous version still excludes this one.
        assert_eq!(Lock::Migration.key(), 0x7472_6f6e_7061_7901);
        assert_eq!(Lock::Scanner.key(), 0x7472_6f6e_7061_7902);
    }
}
