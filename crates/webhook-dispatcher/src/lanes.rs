//! Fair shares of the dispatcher's capacity between destinations: which
//! attempts may start now, in which lane, and which wait parked.
//!
//! Pure bookkeeping under one lock, no I/O; [`crate::deliver`] asks it before
//! every attempt and tells it how each one ended. The rules:
//!
//! - An origin (scheme, host, port of the callback URL) has at most
//!   `per_origin` attempts in flight, in both lanes together, so one
//!   destination never holds every slot; until it has answered once, only
//!   `first_contact` (so several new destinations that hang cannot take the
//!   main lane between them before their first timeouts).
//! - An origin whose last attempt timed out is *slow*: its attempts take the
//!   slow lane (`slow` slots, besides the main ones) until one of them gets
//!   an HTTP answer again. Destinations known to hang never wait for the same
//!   slots as healthy ones, however many of them there are.
//! - A delivery that may not start is parked in its origin's queue (its
//!   message is acknowledged, so it holds no consumer slot). It starts when
//!   its origin finishes an attempt, or, for a slow origin, when a slow slot
//!   frees: the slow lane serves its origins in turn, one delivery each.
//! - Queues are bounded. Beyond the bound a slow origin's delivery is dropped
//!   (it is still due in the database: the sweep republishes it), while a
//!   busy healthy origin's message waits for room instead ([`Admission::Full`]):
//!   that origin is draining, and back-pressure on the queue is cheaper
//!   than a republish.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;

use tronpay_domain::CallbackUrl;
use tronpay_domain::DeliveryId;

/// Deliveries parked per origin, at most.
pub const PARKED_PER_ORIGIN: usize = 1_000;
/// Deliveries parked in all, at most (about 50 bytes each).
pub const PARKED_IN_ALL: usize = 10_000;
/// Origins remembered at most; beyond it, idle ones are forgotten (a slow
/// one's next attempt takes the main lane again and finds out; one that
/// answered starts again with its first-contact share).
const ORIGINS_REMEMBERED: usize = 10_000;

/// Where a callback goes, for fairness: scheme, host and port, as in
/// `https://shop.example.com` or `http://10.0.0.5:8080` (a default port is
/// left out, so `https://a` and `https://a:443/x` are one origin).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin(String);

impl Origin {
    /// The origin of `callback_url`. A URL that does not parse is its own
    /// origin (its attempt fails at once without a request).
    pub fn of(callback_url: &str) -> Self {
        match CallbackUrl::parse(callback_url) {
            Ok(url) => Self(url.url().origin().ascii_serialization()),
            Err(_) => Self(callback_url.to_owned()),
        }
    }

    /// As text: `scheme://host[:port]`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The slots an attempt takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// `WEBHOOK_CONCURRENCY` slots, for destinations that answer.
    Main,
    /// `WEBHOOK_SLOW_CONCURRENCY` slots, for origins whose last attempt timed out.
    Slow,
}

/// How an attempt ended, as far as the lanes care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// An HTTP answer, whatever its status: the origin is not slow.
    Answered,
    /// No answer, or no connection, within the timeout: the origin is slow.
    TimedOut,
    /// Anything else (connection refused, address refused, nothing claimed):
    /// says nothing about the origin's speed.
    Other,
}

/// What to do with a delivery that is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Attempt it now in this lane. The slot is held until
    /// [`Lanes::finish`] or [`Lanes::release`].
    Start(Lane),
    /// Parked in its origin's queue; it starts when the origin has room.
    Parked,
    /// Already parked (its message came again): nothing to do.
    AlreadyParked,
    /// Its origin is slow and its queue full, or the lanes are closed:
    /// forgotten here (the sweep republishes it while it is due).
    Dropped,
    /// Its origin is busy (not slow) and its queue full: ask again when an
    /// attempt ends.
    Full,
}

/// A parked delivery to attempt now; its slot is already held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    pub origin: Origin,
    /// The delivery (`webhook_deliveries.id`).
    pub id: DeliveryId,
    /// The lane whose slot it holds.
    pub lane: Lane,
}

/// What an attempt's end changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Finished {
    /// Parked deliveries to attempt now (their slots are held).
    pub starts: Vec<Start>,
    /// The lane the origin moved to, if it did: `Slow` after a timeout,
    /// `Main` after an answer from a slow origin.
    pub moved_to: Option<Lane>,
}

/// The limits, from the settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Attempts in flight per origin, both lanes together
    /// (`WEBHOOK_ORIGIN_CONCURRENCY`).
    pub per_origin: usize,
    /// Attempts in flight to an origin that has not answered yet (a new
    /// one, or one this dispatcher forgot): a few, so that several new
    /// destinations that hang cannot take the main lane between them before
    /// their first timeouts (at most `per_origin`).
    pub first_contact: usize,
    /// Attempts in flight in the slow lane (`WEBHOOK_SLOW_CONCURRENCY`).
    pub slow: usize,
    /// Deliveries parked per origin.
    pub parked_per_origin: usize,
    /// Deliveries parked in all.
    pub parked_in_all: usize,
}

#[derive(Default)]
struct OriginState {
    in_flight: usize,
    slow: bool,
    /// An attempt to it got an HTTP answer (its full share applies).
    answered: bool,
    parked: VecDeque<DeliveryId>,
    parked_ids: HashSet<DeliveryId>,
    /// Waiting in [`Lanes::slow_queue`].
    queued: bool,
}

impl OriginState {
    /// Attempts it may have in flight.
    fn cap(&self, limits: &Limits) -> usize {
        if self.answered {
            limits.per_origin
        } else {
            limits.first_contact
        }
    }

    fn lane(&self) -> Lane {
        if self.slow { Lane::Slow } else { Lane::Main }
    }

    fn idle(&self) -> bool {
        self.in_flight == 0 && self.parked.is_empty() && !self.queued
    }

    fn unpark(&mut self) -> Option<DeliveryId> {
        let id = self.parked.pop_front()?;
        self.parked_ids.remove(&id);
        Some(id)
    }
}

/// The bookkeeping of one dispatcher (see the module documentation).
pub struct Lanes {
    limits: Limits,
    origins: HashMap<Origin, OriginState>,
    slow_in_flight: usize,
    /// Slow origins with parked deliveries, served in turn as slow slots free.
    slow_queue: VecDeque<Origin>,
    parked: usize,
    closed: bool,
}

impl Lanes {
    /// Limits of 0 are taken as 1.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits: Limits {
                per_origin: limits.per_origin.max(1),
                first_contact: limits.first_contact.clamp(1, limits.per_origin.max(1)),
                slow: limits.slow.max(1),
                parked_per_origin: limits.parked_per_origin,
                parked_in_all: limits.parked_in_all,
            },
            origins: HashMap::new(),
            slow_in_flight: 0,
            slow_queue: VecDeque::new(),
            parked: 0,
            closed: false,
        }
    }

    /// Decides about delivery `id` to `origin`, which is due now.
    pub fn admit(&mut self, origin: &Origin, id: DeliveryId) -> Admission {
        if self.closed {
            return Admission::Dropped;
        }
        let limits = self.limits;
        let slow_full = self.slow_in_flight >= limits.slow;
        let state = self.origins.entry(origin.clone()).or_default();
        let lane = state.lane();
        if state.in_flight < state.cap(&limits) && !(lane == Lane::Slow && slow_full) {
            // A parked id whose message came again, with room now: it goes
            // (this also heals a queue left behind by a cancelled attempt).
            if state.parked_ids.remove(&id) {
                state.parked.retain(|parked| *parked != id);
                self.parked -= 1;
            }
            state.in_flight += 1;
            if lane == Lane::Slow {
                self.slow_in_flight += 1;
            }
            return Admission::Start(lane);
        }
        if state.parked_ids.contains(&id) {
            return Admission::AlreadyParked;
        }
        if state.parked.len() >= limits.parked_per_origin || self.parked >= limits.parked_in_all {
            return if state.slow {
                Admission::Dropped
            } else {
                Admission::Full
            };
        }
        state.parked.push_back(id);
        state.parked_ids.insert(id);
        self.parked += 1;
        if state.slow && !state.queued {
            state.queued = true;
            self.slow_queue.push_back(origin.clone());
        }
        Admission::Parked
    }

    /// Ends an attempt admitted in `lane`: frees its slot, notes what the
    /// end says about the origin, and returns the parked deliveries that may
    /// start now (none once closed).
    pub fn finish(&mut self, origin: &Origin, lane: Lane, ended: Ended) -> Finished {
        let moved_to = self.release(origin, lane, ended);
        let mut starts = Vec::new();
        if !self.closed {
            self.fill(origin, &mut starts);
            self.serve_slow_queue(&mut starts);
        }
        self.tidy(origin);
        Finished { starts, moved_to }
    }

    /// Frees the slot of an attempt admitted in `lane` without starting
    /// anything (for an attempt cancelled midway: what it leaves parked
    /// starts with the origin's next attempt or the next republish). Returns
    /// the lane the origin moved to, if it did.
    pub fn release(&mut self, origin: &Origin, lane: Lane, ended: Ended) -> Option<Lane> {
        if lane == Lane::Slow {
            self.slow_in_flight = self.slow_in_flight.saturating_sub(1);
        }
        let state = self.origins.get_mut(origin)?;
        state.in_flight = state.in_flight.saturating_sub(1);
        let was = state.lane();
        match ended {
            Ended::Answered => {
                state.slow = false;
                state.answered = true;
            }
            Ended::TimedOut => state.slow = true,
            Ended::Other => {}
        }
        let now = state.lane();
        self.tidy(origin);
        (now != was).then_some(now)
    }

    /// Forgets every parked delivery and starts nothing more (shutdown);
    /// attempts in flight still finish.
    pub fn close(&mut self) {
        self.closed = true;
        self.slow_queue.clear();
        self.parked = 0;
        for state in self.origins.values_mut() {
            state.parked.clear();
            state.parked_ids.clear();
            state.queued = false;
        }
        self.origins.retain(|_, state| state.in_flight > 0);
    }

    /// Attempts admitted and not finished yet, both lanes.
    pub fn in_flight(&self) -> usize {
        self.origins.values().map(|state| state.in_flight).sum()
    }

    /// Deliveries parked.
    pub fn parked(&self) -> usize {
        self.parked
    }

    /// Whether `origin`'s attempts take the slow lane.
    pub fn is_slow(&self, origin: &Origin) -> bool {
        self.origins.get(origin).is_some_and(|state| state.slow)
    }

    /// Starts the origin's parked deliveries while it has room in the main
    /// lane; a slow origin joins the slow lane's turn instead.
    fn fill(&mut self, origin: &Origin, starts: &mut Vec<Start>) {
        let Some(state) = self.origins.get_mut(origin) else {
            return;
        };
        if state.parked.is_empty() {
            return;
        }
        if state.slow {
            if !state.queued {
                state.queued = true;
                self.slow_queue.push_back(origin.clone());
            }
            return;
        }
        while state.in_flight < state.cap(&self.limits)
            && let Some(id) = state.unpark()
        {
            self.parked -= 1;
            state.in_flight += 1;
            starts.push(Start {
                origin: origin.clone(),
                id,
                lane: Lane::Main,
            });
        }
    }

    /// Gives free slow slots to the queued slow origins, one delivery each
    /// in turn.
    fn serve_slow_queue(&mut self, starts: &mut Vec<Start>) {
        while self.slow_in_flight < self.limits.slow
            && let Some(origin) = self.slow_queue.pop_front()
        {
            let Some(state) = self.origins.get_mut(&origin) else {
                continue;
            };
            state.queued = false;
            if !state.slow {
                // It answered meanwhile: its deliveries take the main lane.
                self.fill(&origin, starts);
                continue;
            }
            // An origin at its own limit is queued again when one of its
            // attempts ends.
            if state.in_flight >= state.cap(&self.limits) {
                continue;
            }
            let Some(id) = state.unpark() else {
                continue;
            };
            self.parked -= 1;
            state.in_flight += 1;
            self.slow_in_flight += 1;
            if !state.parked.is_empty() {
                state.queued = true;
                self.slow_queue.push_back(origin.clone());
            }
            starts.push(Start {
                origin,
                id,
                lane: Lane::Slow,
            });
        }
    }

    /// Forgets an origin with nothing in flight or parked, unless it is
    /// slow (remembered, up to [`ORIGINS_REMEMBERED`] origins).
    /// Forgets an idle origin with nothing to remember (not slow, never
    /// answered), and every idle one once too many are remembered.
    fn tidy(&mut self, origin: &Origin) {
        if let Some(state) = self.origins.get(origin)
            && state.idle()
            && !state.slow
            && !state.answered
        {
            self.origins.remove(origin);
        }
        if self.origins.len() > ORIGINS_REMEMBERED {
            self.origins.retain(|_, state| !state.idle());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lanes whose origins have their full share from the first attempt
    /// (first contact is tested on its own).
    fn lanes(per_origin: usize, slow: usize) -> Lanes {
        Lanes::new(Limits {
            per_origin,
            first_contact: per_origin,
            slow,
            parked_per_origin: 4,
            parked_in_all: 6,
        })
    }

    fn origin(text: &str) -> Origin {
        Origin::of(text)
    }

    fn ids(count: usize) -> Vec<DeliveryId> {
        (0..count).map(|_| DeliveryId::generate()).collect()
    }

    fn started(finished: &Finished) -> Vec<(String, DeliveryId, Lane)> {
        finished
            .starts
            .iter()
            .map(|start| (start.origin.to_string(), start.id, start.lane))
            .collect()
    }

    #[test]
    fn the_origin_is_scheme_host_and_port() {
        assert_eq!(
            origin("https://Shop.Example.com/a?b=1").as_str(),
            "https://shop.example.com"
        );
        assert_eq!(
            origin("https://shop.example.com:443/x"),
            origin("https://shop.example.com/y")
        );
        assert_ne!(origin("http://shop.example.com/"), origin("https://shop.example.com/"));
        assert_ne!(origin("http://127.0.0.1:8001/"), origin("http://127.0.0.1:8002/"));
        assert_eq!(origin("http://[::1]:8080/hook").as_str(), "http://[::1]:8080");
        assert_eq!(origin("not a url").as_str(), "not a url");
    }

    #[test]
    fn an_origin_at_its_limit_parks_and_the_others_still_start() {
        let mut lanes = lanes(3, 1);
        let hanging = origin("http://hang.example");
        let healthy = origin("http://ok.example");
        let deliveries = ids(5);
        for id in &deliveries[..3] {
            assert_eq!(lanes.admit(&hanging, *id), Admission::Start(Lane::Main));
        }
        assert_eq!(lanes.admit(&hanging, deliveries[3]), Admission::Parked);
        assert_eq!(lanes.admit(&hanging, deliveries[3]), Admission::AlreadyParked);
        assert_eq!(lanes.admit(&hanging, deliveries[4]), Admission::Parked);
        assert_eq!(
            lanes.admit(&healthy, DeliveryId::generate()),
            Admission::Start(Lane::Main)
        );
        assert_eq!((lanes.in_flight(), lanes.parked()), (4, 2));

        // Each end starts the next parked delivery of that origin, in order.
        let next = lanes.finish(&hanging, Lane::Main, Ended::Other);
        assert_eq!(
            started(&next),
            [("http://hang.example".to_owned(), deliveries[3], Lane::Main)]
        );
        let next = lanes.finish(&healthy, Lane::Main, Ended::Answered);
        assert!(next.starts.is_empty());
        let next = lanes.finish(&hanging, Lane::Main, Ended::Other);
        assert_eq!(started(&next)[0].1, deliveries[4]);
        assert_eq!((lanes.in_flight(), lanes.parked()), (3, 0));
    }

    #[test]
    fn a_timeout_moves_the_origin_to_the_slow_lane_until_it_answers() {
        let mut lanes = lanes(3, 2);
        let flaky = origin("https://flaky.example");
        assert_eq!(
            lanes.admit(&flaky, DeliveryId::generate()),
            Admission::Start(Lane::Main)
        );
        let finished = lanes.finish(&flaky, Lane::Main, Ended::TimedOut);
        assert_eq!(finished.moved_to, Some(Lane::Slow));
        assert!(lanes.is_slow(&flaky));
        assert_eq!(
            lanes.admit(&flaky, DeliveryId::generate()),
            Admission::Start(Lane::Slow)
        );
        // A refused connection says nothing about speed.
        assert_eq!(lanes.finish(&flaky, Lane::Slow, Ended::Other).moved_to, None);
        assert_eq!(
            lanes.admit(&flaky, DeliveryId::generate()),
            Admission::Start(Lane::Slow)
        );
        let finished = lanes.finish(&flaky, Lane::Slow, Ended::Answered);
        assert_eq!(finished.moved_to, Some(Lane::Main));
        assert_eq!(
            lanes.admit(&flaky, DeliveryId::generate()),
            Admission::Start(Lane::Main)
        );
        lanes.finish(&flaky, Lane::Main, Ended::Answered);
        // An idle healthy origin is remembered only as one that answers.
        assert_eq!(
            (lanes.in_flight(), lanes.parked(), lanes.is_slow(&flaky)),
            (0, 0, false)
        );
        assert!(lanes.origins.get(&flaky).is_some_and(|state| state.answered));
    }

    #[test]
    fn the_slow_lane_serves_its_origins_in_turn() {
        let mut lanes = lanes(3, 1);
        let (a, b) = (origin("http://a.example"), origin("http://b.example"));
        for slow in [&a, &b] {
            assert_eq!(lanes.admit(slow, DeliveryId::generate()), Admission::Start(Lane::Main));
            lanes.finish(slow, Lane::Main, Ended::TimedOut);
        }
        let (a_ids, b_ids) = (ids(3), ids(3));
        assert_eq!(lanes.admit(&a, a_ids[0]), Admission::Start(Lane::Slow));
        for id in &a_ids[1..] {
            assert_eq!(lanes.admit(&a, *id), Admission::Parked);
        }
        for id in &b_ids {
            assert_eq!(lanes.admit(&b, *id), Admission::Parked);
        }
        // The main lane is not involved: a healthy origin starts at once.
        assert_eq!(
            lanes.admit(&origin("http://ok.example"), DeliveryId::generate()),
            Admission::Start(Lane::Main)
        );

        let mut order = Vec::new();
        let mut last = a.clone();
        for _ in 0..5 {
            let next = lanes.finish(&last, Lane::Slow, Ended::TimedOut);
            assert_eq!(next.starts.len(), 1, "one slow slot");
            let start = &next.starts[0];
            assert_eq!(start.lane, Lane::Slow);
            order.push(start.id);
            last = start.origin.clone();
        }
        assert_eq!(order, [a_ids[1], b_ids[0], a_ids[2], b_ids[1], b_ids[2]]);
        assert!(lanes.finish(&last, Lane::Slow, Ended::TimedOut).starts.is_empty());
        assert_eq!(lanes.slow_in_flight, 0);
    }

    #[test]
    fn parked_deliveries_of_an_origin_that_answers_again_take_the_main_lane() {
        let mut lanes = lanes(3, 1);
        let (a, b) = (origin("http://a.example"), origin("http://b.example"));
        for slow in [&a, &b] {
            assert_eq!(lanes.admit(slow, DeliveryId::generate()), Admission::Start(Lane::Main));
            lanes.finish(slow, Lane::Main, Ended::TimedOut);
        }
        assert_eq!(lanes.admit(&a, DeliveryId::generate()), Admission::Start(Lane::Slow));
        let b_ids = ids(3);
        for id in &b_ids {
            assert_eq!(lanes.admit(&b, *id), Admission::Parked);
        }
        // a's slot frees: b's turn in the slow lane.
        let next = lanes.finish(&a, Lane::Slow, Ended::Answered);
        assert_eq!(started(&next), [("http://b.example".to_owned(), b_ids[0], Lane::Slow)]);
        // b answers: its two other parked deliveries go to the main lane.
        let next = lanes.finish(&b, Lane::Slow, Ended::Answered);
        assert_eq!(next.moved_to, Some(Lane::Main));
        assert_eq!(
            started(&next),
            [
                ("http://b.example".to_owned(), b_ids[1], Lane::Main),
                ("http://b.example".to_owned(), b_ids[2], Lane::Main)
            ]
        );
    }

    #[test]
    fn full_queues_drop_for_slow_origins_and_push_back_for_busy_ones() {
        let mut lanes = lanes(1, 1);
        let busy = origin("http://busy.example");
        assert_eq!(lanes.admit(&busy, DeliveryId::generate()), Admission::Start(Lane::Main));
        for id in ids(4) {
            assert_eq!(lanes.admit(&busy, id), Admission::Parked);
        }
        assert_eq!(
            lanes.admit(&busy, DeliveryId::generate()),
            Admission::Full,
            "4 per origin"
        );

        let slow = origin("http://slow.example");
        assert_eq!(lanes.admit(&slow, DeliveryId::generate()), Admission::Start(Lane::Main));
        lanes.finish(&slow, Lane::Main, Ended::TimedOut);
        assert_eq!(lanes.admit(&slow, DeliveryId::generate()), Admission::Start(Lane::Slow));
        assert_eq!(lanes.admit(&slow, DeliveryId::generate()), Admission::Parked);
        assert_eq!(lanes.admit(&slow, DeliveryId::generate()), Admission::Parked);
        assert_eq!(lanes.parked(), 6);
        assert_eq!(
            lanes.admit(&slow, DeliveryId::generate()),
            Admission::Dropped,
            "6 in all"
        );
        // Another origin with room is never held up by the queues.
        assert_eq!(
            lanes.admit(&origin("http://ok.example"), DeliveryId::generate()),
            Admission::Start(Lane::Main)
        );
    }

    #[test]
    fn a_parked_delivery_whose_message_comes_again_with_room_starts() {
        let mut lanes = lanes(1, 1);
        let busy = origin("http://busy.example");
        let (first, parked) = (DeliveryId::generate(), DeliveryId::generate());
        assert_eq!(lanes.admit(&busy, first), Admission::Start(Lane::Main));
        assert_eq!(lanes.admit(&busy, parked), Admission::Parked);
        // The attempt was cancelled: its slot is freed, nothing started.
        assert_eq!(lanes.release(&busy, Lane::Main, Ended::Other), None);
        assert_eq!(lanes.parked(), 1);
        // The sweep republishes the parked one: it starts, once.
        assert_eq!(lanes.admit(&busy, parked), Admission::Start(Lane::Main));
        assert_eq!(lanes.parked(), 0);
        assert!(lanes.finish(&busy, Lane::Main, Ended::Answered).starts.is_empty());
        assert_eq!((lanes.in_flight(), lanes.parked()), (0, 0));
    }

    #[test]
    fn closing_forgets_the_parked_and_starts_nothing() {
        let mut lanes = lanes(1, 1);
        let busy = origin("http://busy.example");
        assert_eq!(lanes.admit(&busy, DeliveryId::generate()), Admission::Start(Lane::Main));
        assert_eq!(lanes.admit(&busy, DeliveryId::generate()), Admission::Parked);
        lanes.close();
        assert_eq!(lanes.parked(), 0);
        assert_eq!(lanes.in_flight(), 1, "the attempt in flight still finishes");
        assert!(lanes.finish(&busy, Lane::Main, Ended::Answered).starts.is_empty());
        assert_eq!(lanes.in_flight(), 0);
        assert_eq!(lanes.admit(&busy, DeliveryId::generate()), Admission::Dropped);
    }

    #[test]
    fn an_origin_that_never_answered_gets_a_few_slots_until_it_does() {
        let mut lanes = Lanes::new(Limits {
            per_origin: 3,
            first_contact: 1,
            slow: 1,
            parked_per_origin: 4,
            parked_in_all: 6,
        });
        let new = origin("https://new.example.com/hook");
        let [first, second, third] = [DeliveryId::generate(), DeliveryId::generate(), DeliveryId::generate()];
        assert_eq!(lanes.admit(&new, first), Admission::Start(Lane::Main));
        assert_eq!(
            lanes.admit(&new, second),
            Admission::Parked,
            "one attempt until it answers"
        );
        assert_eq!(lanes.admit(&new, third), Admission::Parked);
        // Its first answer gives it its full share: both parked ones start.
        let finished = lanes.finish(&new, Lane::Main, Ended::Answered);
        let started: Vec<DeliveryId> = finished.starts.iter().map(|start| start.id).collect();
        assert_eq!(started, [second, third]);
    }
}
