//! Model-based tests of the outbox and breaker behind the publisher.
