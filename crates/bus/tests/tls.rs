//! `amqps://`: the services reach RabbitMQ over TLS, trusting a private CA
//! named by `RABBITMQ_CA_FILE`, and refuse a broker whose certificate no
//! trusted CA signed.

// Integration tests: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tronpay_bus::{BusSettings, Outgoing, Publisher};
use tronpay_domain::events::PAYMENT_DETECTED;
use tronpay_runtime::Validate;
use tronpay_testkit::TestBus;
use tronpay_testkit::tls::{TestCa, TlsProxy, Upgrade};

fn amqps(bus: &TestBus, proxy: &TlsProxy, ca: Option<&TestCa>) -> BusSettings {
    let mut url = url::Url::parse(&bus.settings.rabbitmq_url).unwrap();
    url.set_scheme("amqps").unwrap();
    url.set_host(Some("localhost")).unwrap();
    url.set_port(Some(proxy.addr.port())).unwrap();
    BusSettings {
        rabbitmq_url: url.to_string(),
        rabbitmq_ca_file: ca.map(|ca| ca.pem_file.display().to_string()),
        ..bus.settings.clone()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn events_cross_a_tls_connection_checked_against_a_private_ca() {
    let bus = TestBus::new();
    let ca = TestCa::new("tronpay test CA");
    let proxy = TlsProxy::start(bus.broker_addr(), Upgrade::Direct, &ca, &["localhost"]).await;
    let settings = amqps(&bus, &proxy, Some(&ca));
    settings.validate().unwrap();

    let publisher = Publisher::connect(&settings, "tls-test").await.unwrap();
    publisher
        .publish(&[Outgoing {
            routing_key: PAYMENT_DETECTED.into(),
            message_id: "m-1".into(),
            payload: b"{}".to_vec(),
        }])
        .await
        .unwrap();
    publisher.close().await;
    assert!(proxy.handshakes() >= 1, "the connection went through TLS");
    let queue = bus.settings.queue(tronpay_bus::topology::Queue::ApiPaymentDetected);
    assert_eq!(bus.depth(&queue.name).await, 1, "the event reached the broker");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_certificate_from_an_unknown_ca_is_refused() {
    let bus = TestBus::new();
    let ca = TestCa::new("tronpay test CA");
    let proxy = TlsProxy::start(bus.broker_addr(), Upgrade::Direct, &ca, &["localhost"]).await;
    let other = TestCa::new("someone else's CA");
    for settings in [amqps(&bus, &proxy, None), amqps(&bus, &proxy, Some(&other))] {
        let error = Publisher::connect(&settings, "tls-test").await.err().expect("refused");
        let text = error.to_string();
        assert!(text.to_lowercase().contains("certificate"), "{text}");
    }
    assert_eq!(proxy.handshakes(), 0);

    let bad = BusSettings {
        rabbitmq_ca_file: Some("/nonexistent/ca.pem".into()),
        ..bus.settings.clone()
    };
    assert!(
        bad.validate()
            .unwrap_err()
            .contains("RABBITMQ_CA_FILE /nonexistent/ca.pem")
    );
}
