//! Table definitions, written to match `migrations/` (checked by the
//! `schema_matches_migrations` test).

pub mod sql_types {
    /// The `payment_status` enum type.
    #[derive(diesel::sql_types::SqlType, diesel::query_builder::QueryId)]
    #[diesel(postgres_type(name = "payment_status"))]
    pub struct PaymentStatus;
}

diesel::table! {
    use diesel::sql_types::*;
    use super::sql_types::PaymentStatus;

    payments (id) {
        id -> Varchar,
        wallet_address -> Varchar,
        expected_amount_usdt -> Numeric,
        callback_url -> Text,
        order_id -> Varchar,
        status -> PaymentStatus,
        transaction_hash -> Nullable<Varchar>,
        received_amount_usdt -> Nullable<Numeric>,
        created_at -> Timestamp,
        completed_at -> Nullable<Timestamp>,
        last_checked_timestamp -> Int8,
        callback_attempts -> Int4,
        last_callback_attempt -> Nullable<Timestamp>,
        callback_success -> Bool,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    payment_logs (id) {
        id -> Int4,
        payment_id -> Varchar,
        event_type -> Varchar,
        message -> Nullable<Text>,
        metadata -> Nullable<Json>,
        created_at -> Timestamp,
    }
}

diesel::joinable!(payment_logs -> payments (payment_id));
diesel::allow_tables_to_appear_in_same_query!(payments, payment_logs);
