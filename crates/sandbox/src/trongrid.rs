//! TronGrid's `GET /v1/accounts/{address}/transactions/trc20`: the USDT
//! Transfer events touching one address, newest first by default, paged
//! with an opaque `fingerprint`.

use tronpay_domain::TronAddress;

use crate::chain::{Addr, Hash, hex};
use crate::state::{Shared, now_ms};

/// TronGrid's default and largest page.
const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 200;

/// Where a transfer sits: (block, transaction index in the block, log index).
type Position = (u64, u32, u32);

/// The listing's query parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Query {
    pub only_confirmed: bool,
    pub only_unconfirmed: bool,
    pub only_to: bool,
    pub only_from: bool,
    pub limit: usize,
    pub min_timestamp: Option<i64>,
    pub max_timestamp: Option<i64>,
    pub contract: Option<TronAddress>,
    pub ascending: bool,
    /// The last row of the previous page.
    pub after: Option<Position>,
}

impl Query {
    /// Reads the query string's pairs; unknown parameters are ignored, as
    /// TronGrid does.
    pub fn parse(pairs: &[(String, String)]) -> Result<Self, String> {
        let mut query = Self {
            only_confirmed: false,
            only_unconfirmed: false,
            only_to: false,
            only_from: false,
            limit: DEFAULT_LIMIT,
            min_timestamp: None,
            max_timestamp: None,
            contract: None,
            ascending: false,
            after: None,
        };
        for (name, value) in pairs {
            match name.as_str() {
                "only_confirmed" => query.only_confirmed = flag(name, value)?,
                "only_unconfirmed" => query.only_unconfirmed = flag(name, value)?,
                "only_to" => query.only_to = flag(name, value)?,
                "only_from" => query.only_from = flag(name, value)?,
                "limit" => {
                    let limit: usize = value.parse().map_err(|_| format!("limit {value:?} is not a number"))?;
                    query.limit = limit.clamp(1, MAX_LIMIT);
                }
                "min_timestamp" => query.min_timestamp = Some(timestamp(name, value)?),
                "max_timestamp" => query.max_timestamp = Some(timestamp(name, value)?),
                "contract_address" if !value.is_empty() => {
                    query.contract =
                        Some(TronAddress::parse(value).map_err(|error| format!("invalid contract_address: {error}"))?);
                }
                "order_by" => {
                    query.ascending = match value.as_str() {
                        "block_timestamp,asc" => true,
                        "block_timestamp,desc" | "" => false,
                        _ => {
                            return Err(format!(
                                "order_by {value:?}: use block_timestamp,desc or block_timestamp,asc"
                            ));
                        }
                    }
                }
                "fingerprint" if !value.is_empty() => {
                    query.after = Some(decode_fingerprint(value).ok_or("invalid fingerprint")?);
                }
                _ => {}
            }
        }
        Ok(query)
    }
}

fn flag(name: &str, value: &str) -> Result<bool, String> {
    match value {
        "true" | "1" | "" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(format!("{name} must be true or false")),
    }
}

fn timestamp(name: &str, value: &str) -> Result<i64, String> {
    value
        .parse()
        .map_err(|_| format!("{name} must be milliseconds since the epoch"))
}

fn encode_fingerprint((block, tx, log): Position) -> String {
    format!("{block:x}g{tx:x}g{log:x}")
}

fn decode_fingerprint(text: &str) -> Option<Position> {
    let mut parts = text.split('g');
    let block = u64::from_str_radix(parts.next()?, 16).ok()?;
    let tx = u32::from_str_radix(parts.next()?, 16).ok()?;
    let log = u32::from_str_radix(parts.next()?, 16).ok()?;
    parts.next().is_none().then_some((block, tx, log))
}

/// One listed transfer.
#[derive(Debug, Clone)]
struct Row {
    position: Position,
    txid: Hash,
    from: Addr,
    to: Addr,
    amount: u64,
    timestamp: i64,
    unconfirmed: bool,
}

/// The rows of one page and whether another page follows.
fn list(shared: &Shared, address: &TronAddress, query: &Query) -> (Vec<Row>, bool) {
    let usdt = &shared.params.usdt;
    if query.contract.is_some_and(|contract| contract != *usdt) {
        return (Vec::new(), false);
    }
    let mut wanted = [0u8; 20];
    wanted.copy_from_slice(&address.as_bytes()[1..]);
    let (blocks, solid) = shared.with_chain(|chain| {
        let solid = chain.solid();
        let mut low = if query.only_unconfirmed {
            solid + 1
        } else {
            shared.params.start_height
        };
        let mut high = if query.only_confirmed { solid } else { chain.head() };
        if let Some((block, _, _)) = query.after {
            if query.ascending {
                low = low.max(block);
            } else {
                high = high.min(block);
            }
        }
        (chain.blocks(low, high), solid)
    });
    let in_range = |timestamp: i64| {
        query.min_timestamp.is_none_or(|min| timestamp >= min) && query.max_timestamp.is_none_or(|max| timestamp <= max)
    };
    let ordered: Box<dyn Iterator<Item = _>> = if query.ascending {
        Box::new(blocks.iter())
    } else {
        Box::new(blocks.iter().rev())
    };
    let mut rows = Vec::new();
    for block in ordered {
        if !in_range(block.timestamp) {
            continue;
        }
        let mut found = Vec::new();
        let mut tx_index = 0u32;
        block.for_each_tx(&shared.params, |tx| {
            tx.for_each_transfer(|log_index, from, to, amount| {
                let matches = match (query.only_to, query.only_from) {
                    (true, false) => *to == wanted,
                    (false, true) => *from == wanted,
                    (true, true) => *to == wanted && *from == wanted,
                    (false, false) => *to == wanted || *from == wanted,
                };
                if matches {
                    found.push(Row {
                        position: (block.number, tx_index, log_index),
                        txid: tx.txid,
                        from: *from,
                        to: *to,
                        amount,
                        timestamp: block.timestamp,
                        unconfirmed: block.number > solid,
                    });
                }
            });
            tx_index += 1;
        });
        if !query.ascending {
            found.reverse();
        }
        for row in found {
            let after_cursor = query.after.is_none_or(|after| {
                if query.ascending {
                    row.position > after
                } else {
                    row.position < after
                }
            });
            if !after_cursor {
                continue;
            }
            if rows.len() == query.limit {
                return (rows, true);
            }
            rows.push(row);
        }
    }
    (rows, false)
}

/// The whole answer: `{"data": [...], "success": true, "meta": {...}}`, and
/// the query string of the next page if there is one.
pub(crate) fn page(
    shared: &Shared,
    address: &TronAddress,
    query: &Query,
    pairs: &[(String, String)],
    base_url: &str,
) -> serde_json::Value {
    let (rows, more) = list(shared, address, query);
    let token = shared.params.usdt.to_base58();
    let data: Vec<serde_json::Value> = rows
        .iter()
        .map(|row| {
            let mut value = serde_json::json!({
                "transaction_id": hex(&row.txid),
                "token_info": {
                    "symbol": "USDT",
                    "address": token,
                    "decimals": 6,
                    "name": "Tether USD",
                },
                "block_timestamp": row.timestamp,
                "from": TronAddress::from_evm_bytes(row.from).to_base58(),
                "to": TronAddress::from_evm_bytes(row.to).to_base58(),
                "type": "Transfer",
                "value": row.amount.to_string(),
            });
            if row.unconfirmed {
                value["_unconfirmed"] = serde_json::Value::Bool(true);
            }
            value
        })
        .collect();
    let mut meta = serde_json::json!({
        "at": now_ms(),
        "page_size": rows.len(),
    });
    if let (true, Some(last)) = (more, rows.last()) {
        let fingerprint = encode_fingerprint(last.position);
        let mut next = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in pairs.iter().filter(|(name, _)| name != "fingerprint") {
            next.append_pair(name, value);
        }
        next.append_pair("fingerprint", &fingerprint);
        meta["links"] = serde_json::json!({ "next": format!("{base_url}?{}", next.finish()) });
        meta["fingerprint"] = serde_json::Value::String(fingerprint);
    }
    serde_json::json!({
        "data": data,
        "success": true,
        "meta": meta,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        url::form_urlencoded::parse(text.as_bytes()).into_owned().collect()
    }

    #[test]
    fn fingerprints_round_trip() {
        let position = (1_000_123, 7, 2);
        assert_eq!(decode_fingerprint(&encode_fingerprint(position)), Some(position));
        assert_eq!(decode_fingerprint("zz"), None);
        assert_eq!(decode_fingerprint("1g2g3g4"), None);
    }

    #[test]
    fn query_parameters_are_read_and_checked() {
        let query = Query::parse(&pairs(
            "only_confirmed=true&limit=500&order_by=block_timestamp,asc&min_timestamp=5&contract_address=TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t",
        ))
        .unwrap();
        assert!(query.only_confirmed && query.ascending);
        assert_eq!((query.limit, query.min_timestamp), (MAX_LIMIT, Some(5)));
        assert!(Query::parse(&pairs("limit=x")).is_err());
        assert!(Query::parse(&pairs("order_by=value")).is_err());
        assert!(Query::parse(&pairs("contract_address=Tnope")).is_err());
        assert!(Query::parse(&pairs("fingerprint=%%")).is_err());
        assert_eq!(Query::parse(&[]).unwrap().limit, DEFAULT_LIMIT);
    }
}
