DROP TABLE payment_logs;
DROP TABLE payments;
DROP TYPE payment_status;
