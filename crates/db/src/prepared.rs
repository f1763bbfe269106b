//! Hand-written SQL that diesel still prepares once per connection.
//!
//! `diesel::sql_query` is never cached (its text could vary), which costs an
//! extra round trip and a parse per execution. A statement whose text is
//! fixed by its type implements [`Statement`]; wrapped in [`Prepared`] it has
//! a static query id, so diesel caches its prepared form.

use diesel::QueryResult;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};

/// A statement with a fixed SQL text and its bind values.
pub trait Statement: Send + Sync + 'static {
    fn walk_ast<'b>(&'b self, out: AstPass<'_, 'b, Pg>) -> QueryResult<()>;
}

/// Runs a [`Statement`] through diesel with statement caching.
pub struct Prepared<S>(pub S);

impl<S: Statement> QueryId for Prepared<S> {
    type QueryId = S;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<S: Statement> QueryFragment<Pg> for Prepared<S> {
    fn walk_ast<'b>(&'b self, out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.0.walk_ast(out)
    }
}
