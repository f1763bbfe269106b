//! The least-privileged role the services run as (PRODUCT §12): the owner
//! of the tables (who runs `tronpay db create-tables`) keeps DDL; the
//! services' role may read and write rows of tronpay's tables, use their
//! sequences, and read which migrations were applied — nothing else: no
//! `CREATE`, `ALTER`, `DROP` or `TRUNCATE`, no writes to the migrations table,
//! and it owns nothing.

use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

use crate::error::DbError;

/// Where diesel records the applied migrations.
const MIGRATIONS_TABLE: &str = "__diesel_schema_migrations";

/// Whether `role` is a plain PostgreSQL role name tronpay will write into
/// statements: 1 to 63 lower-case letters, digits and `_`, not starting
/// with a digit, and not a reserved `pg_` name.
pub fn valid_role(role: &str) -> bool {
    let mut chars = role.chars();
    matches!(chars.next(), Some('a'..='z' | '_'))
        && role.len() <= 63
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !role.starts_with("pg_")
}

/// The statements that give `role` what the services use in database
/// `database`, tables owned by `owner` (both names as PostgreSQL shows
/// them; quoted here). Repeatable; run again after an upgrade (the default
/// privileges also cover tables later migrations create as `owner`).
pub fn statements(database: &str, owner: &str, role: &str) -> Vec<String> {
    let quote = |name: &str| format!("\"{}\"", name.replace('"', "\"\""));
    let (database, owner, role) = (quote(database), quote(owner), quote(role));
    vec![
        format!("GRANT CONNECT ON DATABASE {database} TO {role}"),
        format!("GRANT USAGE ON SCHEMA public TO {role}"),
        format!("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}"),
        format!("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}"),
        format!("REVOKE INSERT, UPDATE, DELETE ON {MIGRATIONS_TABLE} FROM {role}"),
        format!(
            "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role}"
        ),
        format!(
            "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {role}"
        ),
    ]
}

#[derive(diesel::QueryableByName)]
struct Names {
    #[diesel(sql_type = Text)]
    database: String,
    #[diesel(sql_type = Text)]
    owner: String,
}

/// [`statements`] for `role` in the database `conn` is connected to, the
/// connected user taken as the tables' owner.
pub async fn for_role(conn: &mut AsyncPgConnection, role: &str) -> Result<Vec<String>, DbError> {
    let names: Names = diesel::sql_query("SELECT current_database()::text AS database, current_user::text AS owner")
        .get_result(conn)
        .await?;
    Ok(statements(&names.database, &names.owner, role))
}

/// Runs [`for_role`]'s statements in one transaction; returns them. The
/// role must exist (`CREATE ROLE … LOGIN PASSWORD …` is the operator's, who
/// chooses the password).
pub async fn apply(conn: &mut AsyncPgConnection, role: &str) -> Result<Vec<String>, DbError> {
    let statements = for_role(conn, role).await?;
    conn.transaction::<_, DbError, _>(async |conn| {
        for statement in &statements {
            conn.batch_execute(statement).await?;
        }
        Ok(())
    })
    .await?;
    Ok(statements)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_are_plain_and_quoted() {
        for good in ["tronpay_app", "_x", "app2"] {
            assert!(valid_role(good), "{good}");
        }
        for bad in [
            "",
            "2app",
            "App",
            "app-x",
            "a b",
            "pg_read_all_data",
            "x\"; DROP TABLE payments; --",
        ] {
            assert!(!valid_role(bad), "{bad}");
        }
        let statements = statements("tron\"pay", "postgres", "tronpay_app");
        assert_eq!(
            statements[0],
            "GRANT CONNECT ON DATABASE \"tron\"\"pay\" TO \"tronpay_app\""
        );
        assert!(statements.iter().all(|statement| !statement.contains("ALL PRIVILEGES")));
    }
}
