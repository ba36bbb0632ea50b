//! Hedging: if the first attempt of an idempotent request has not answered after `hedge_after`, race a
//! second attempt on the next-best backend; the first conclusive answer wins and the other attempt is
//! dropped (its connection closed, its breaker permit released without a verdict). Uses the retry
//! module's classification to decide what "conclusive" means.

use std::future::Future;
use std::time::Duration;

use super::attempt::{Step, Tried};
use crate::error::ApiError;

/// One finished leg: the backend index and what it produced.
type Leg<V> = (usize, Result<Tried<V>, ApiError>);

/// A leg that ends the call (success, a final answer, or an aborting error).
fn is_conclusive<V>(leg: &Leg<V>) -> bool {
    match &leg.1 {
        Ok(t) => matches!(t.step, Step::Success | Step::Final),
        Err(_) => true,
    }
}

/// Races `primary` against a hedge started after `delay` by `start_hedge` (which may decline by
/// returning `None`, e.g. no other backend or no retry budget). Returns every finished attempt, in
/// completion order; the last one is the conclusive answer if any attempt was conclusive.
pub(crate) async fn race<V, P, H, F>(primary: P, delay: Duration, start_hedge: F) -> Vec<Leg<V>>
where
    P: Future<Output = Leg<V>>,
    H: Future<Output = Leg<V>>,
    F: FnOnce() -> Option<H>,
{
    tokio::pin!(primary);
    tokio::select! {
        a = &mut primary => return vec![a],
        _ = tokio::time::sleep(delay) => {}
    }
    let Some(hedge) = start_hedge() else {
        return vec![primary.await];
    };
    tokio::pin!(hedge);
    let (first, primary_done) = tokio::select! {
        a = &mut primary => (a, true),
        a = &mut hedge => (a, false),
    };
    if is_conclusive(&first) {
        // Returning drops the other leg: its request is cancelled.
        return vec![first];
    }
    // The first to finish failed: the other leg is the call's remaining hope.
    let second = if primary_done {
        hedge.await
    } else {
        primary.await
    };
    vec![first, second]
}
