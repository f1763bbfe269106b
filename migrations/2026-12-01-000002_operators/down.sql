DROP TABLE operator_sign_in_failures;
DROP TABLE operator_sessions;
DROP TABLE operators;
