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
        notify_events -> Array<Text>,
        api_version -> Int2,
        redirect_url -> Nullable<Text>,
        metadata_json -> Nullable<Text>,
        checkout_url -> Nullable<Text>,
        idempotency_key_id -> Nullable<Uuid>,
        idempotency_key -> Nullable<Varchar>,
        idempotency_request_hash -> Nullable<Varchar>,
        address_mode -> Varchar,
        amount_to_pay -> Nullable<Numeric>,
        derivation_account -> Nullable<Varchar>,
        derivation_index -> Nullable<Int4>,
    }
}

diesel::table! {
    amount_reservations (address, amount) {
        address -> Varchar,
        amount -> Numeric,
        payment_id -> Varchar,
        created_at -> Timestamp,
    }
}

diesel::table! {
    receiving_addresses (address) {
        address -> Varchar,
        source -> Varchar,
        payment_id -> Nullable<Varchar>,
        assigned_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
        released_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    derivation_accounts (account) {
        account -> Varchar,
        next_index -> Int8,
    }
}

diesel::table! {
    free_derived_addresses (account, derivation_index) {
        account -> Varchar,
        derivation_index -> Int4,
        address -> Varchar,
    }
}

diesel::table! {
    api_keys (id) {
        id -> Uuid,
        name -> Varchar,
        prefix -> Varchar,
        secret_hash -> Varchar,
        scopes -> Array<Text>,
        created_at -> Timestamp,
        last_used_at -> Nullable<Timestamp>,
        revoked_at -> Nullable<Timestamp>,
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

diesel::table! {
    transfers (txid, log_index) {
        txid -> Varchar,
        log_index -> Int4,
        block_number -> Int8,
        block_time -> Timestamp,
        from_address -> Varchar,
        to_address -> Varchar,
        amount_usdt -> Numeric,
        status -> Varchar,
        seen_at -> Timestamp,
        confirmed_at -> Nullable<Timestamp>,
        detected_payment_id -> Nullable<Varchar>,
        payment_id -> Nullable<Varchar>,
        match_kind -> Nullable<Varchar>,
        applied_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    chain_state (id) {
        id -> Int2,
        cursor_block -> Int8,
        cursor_block_time -> Nullable<Timestamp>,
        tip_block -> Int8,
        head_block -> Nullable<Int8>,
        head_block_time -> Nullable<Timestamp>,
        final_block -> Nullable<Int8>,
        polled_at -> Nullable<Timestamp>,
        last_error -> Nullable<Text>,
        last_error_at -> Nullable<Timestamp>,
        leader -> Nullable<Varchar>,
        updated_at -> Timestamp,
        final_block_time -> Nullable<Timestamp>,
        block_interval_ms -> Nullable<Int4>,
        node_stall_seconds -> Nullable<Int4>,
    }
}

diesel::table! {
    outbox (id) {
        id -> Int8,
        message_id -> Uuid,
        routing_key -> Varchar,
        payload -> Jsonb,
        created_at -> Timestamp,
        published_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    processed_messages (consumer, message_id) {
        consumer -> Varchar,
        message_id -> Uuid,
        processed_at -> Timestamp,
    }
}

diesel::table! {
    webhook_deliveries (id) {
        id -> Uuid,
        payment_id -> Varchar,
        event_type -> Varchar,
        webhook_id -> Varchar,
        payload -> Jsonb,
        status -> Varchar,
        attempts -> Int4,
        next_attempt_at -> Timestamp,
        created_at -> Timestamp,
        published_at -> Nullable<Timestamp>,
        locked_until -> Nullable<Timestamp>,
        last_attempt_at -> Nullable<Timestamp>,
        last_status -> Nullable<Int4>,
        last_error -> Nullable<Text>,
        delivered_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    webhook_attempts (id) {
        id -> Int8,
        delivery_id -> Uuid,
        attempt -> Int4,
        started_at -> Timestamp,
        duration_ms -> Int4,
        http_status -> Nullable<Int4>,
        response_body -> Nullable<Text>,
        error -> Nullable<Text>,
        outcome -> Varchar,
    }
}

diesel::table! {
    webhook_secrets (id) {
        id -> Int4,
        secret -> Text,
        created_at -> Timestamp,
        expires_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    operators (id) {
        id -> Uuid,
        name -> Varchar,
        password_hash -> Text,
        created_at -> Timestamp,
        password_changed_at -> Timestamp,
    }
}

diesel::table! {
    operator_sessions (token_hash) {
        token_hash -> Varchar,
        operator_id -> Uuid,
        csrf_token -> Varchar,
        created_at -> Timestamp,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    operator_sign_in_failures (id) {
        id -> Int8,
        name -> Varchar,
        client_ip -> Varchar,
        at -> Timestamp,
    }
}

diesel::table! {
    operator_actions (id) {
        id -> Int8,
        operator -> Varchar,
        action -> Varchar,
        subject -> Varchar,
        at -> Timestamp,
    }
}

diesel::joinable!(operator_sessions -> operators (operator_id));
diesel::joinable!(payment_logs -> payments (payment_id));
diesel::joinable!(webhook_deliveries -> payments (payment_id));
diesel::allow_tables_to_appear_in_same_query!(
    payments,
    payment_logs,
    transfers,
    chain_state,
    outbox,
    webhook_deliveries,
    receiving_addresses,
    amount_reservations,
    derivation_accounts,
    free_derived_addresses,
    operators,
    operator_sessions,
    webhook_attempts
);
