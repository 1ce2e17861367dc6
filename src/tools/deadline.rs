//! The one deadline of a tool call, computed once where the call enters.
//!
//! Each tool's schema declares which arguments bear on time (`x-deadline`, see
//! `build/deadline.rs`): a timeout that budgets the whole call, and windows the
//! call spends listening on purpose. `build.rs` turns that declaration into a
//! [`Timed`] impl on the tool's parameter type; [`Deadline::start`] is the only
//! code that turns it into an instant. Handlers receive the [`Deadline`] and
//! bound every wait by it (a SUBACK, a PUBACK, a reply) instead of carrying
//! timeouts of their own; [`run`] stops a handler that overruns it anyway.

use super::{ToolContext, ToolError};
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

/// The budget of a call whose schema declares no timeout default.
pub const DEFAULT_BUDGET_MS: u64 = 30_000;

/// How long past its deadline a handler may take to put its answer together
/// (say which step ran out of time) before [`run`] answers for it.
pub const GRACE: Duration = Duration::from_secs(1);

/// What a call's arguments say about its time, as its schema declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// The caller's budget for the whole call, when given.
    pub timeout_ms: Option<u64>,
    /// The budget without `timeout_ms`, before windows are added.
    pub default_ms: u64,
    /// The sum of the call's windows (listening, waiting), defaults applied.
    pub window_ms: u64,
}

/// Parameters whose schema declares their time fields (generated for every tool).
pub trait Timed {
    /// The declared fields' values.
    fn timing(&self) -> Timing;
}

/// When a call must be done.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    /// The instant the call's waits end.
    at: Instant,
    /// `at` minus the call's start: what error texts report.
    budget: Duration,
    /// The windows the call spends on purpose, as declared, defaults applied.
    window: Duration,
}

impl Deadline {
    /// The deadline of a call starting now: the caller's `timeout_ms`, else
    /// the declared default plus the windows; never above the server's ceiling.
    pub fn start(args: &impl Timed, ceiling: Duration) -> Deadline {
        let t = args.timing();
        let ms = t
            .timeout_ms
            .unwrap_or_else(|| t.default_ms.saturating_add(t.window_ms));
        let budget = Duration::from_millis(ms).min(ceiling);
        Deadline {
            at: Instant::now() + budget,
            budget,
            window: Duration::from_millis(t.window_ms),
        }
    }

    /// The instant every wait of the call ends by.
    pub fn at(&self) -> Instant {
        self.at
    }

    /// The whole budget of the call.
    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// The call's declared window (listening, waiting), its default applied
    /// when the argument is absent.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// `wait`, cut short where it would run past the deadline (a window
    /// longer than the caller's timeout).
    pub fn cut(&self, wait: Duration) -> Duration {
        wait.min(self.remaining())
    }

    /// Time left.
    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// Time left for one step when `later` must stay for the steps after it
    /// (a SUBACK before a listening window).
    pub fn reserving(&self, later: Duration) -> Duration {
        self.remaining().saturating_sub(later)
    }

    /// The error of a call stopped at its deadline.
    fn exceeded(&self) -> ToolError {
        ToolError::DeadlineExceeded {
            budget_ms: self.budget.as_millis(),
        }
    }
}

/// Runs a handler under the call's one deadline: computes it from the
/// arguments, hands it to the handler, and answers for a handler that is
/// still running [`GRACE`] after it.
pub async fn run<'a, P: Timed, R, F>(
    ctx: &'a ToolContext,
    args: P,
    handler: impl FnOnce(&'a ToolContext, P, Deadline) -> F,
) -> Result<R, ToolError>
where
    F: Future<Output = Result<R, ToolError>>,
{
    let deadline = Deadline::start(&args, ctx.app.config.max_call_timeout);
    tokio::time::timeout_at(deadline.at + GRACE, handler(ctx, args, deadline))
        .await
        .unwrap_or_else(|_| Err(deadline.exceeded()))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct T(Timing);
    impl Timed for T {
        fn timing(&self) -> Timing {
            self.0
        }
    }

    fn budget(timeout_ms: Option<u64>, default_ms: u64, window_ms: u64, ceiling_s: u64) -> u128 {
        let t = T(Timing {
            timeout_ms,
            default_ms,
            window_ms,
        });
        Deadline::start(&t, Duration::from_secs(ceiling_s))
            .budget()
            .as_millis()
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_is_the_timeout_or_the_default_plus_windows_under_the_ceiling() {
        assert_eq!(budget(Some(500), 30_000, 5_000, 330), 500);
        assert_eq!(budget(None, 30_000, 5_000, 330), 35_000);
        assert_eq!(budget(None, 30_000, u64::MAX, 330), 330_000);
        assert_eq!(budget(Some(600_000), 30_000, 0, 330), 330_000);
    }

    #[tokio::test(start_paused = true)]
    async fn reserving_leaves_time_for_later_steps() {
        let d = Deadline::start(
            &T(Timing {
                timeout_ms: Some(10_000),
                default_ms: 0,
                window_ms: 0,
            }),
            Duration::from_secs(60),
        );
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(d.remaining(), Duration::from_secs(6));
        assert_eq!(d.reserving(Duration::from_secs(1)), Duration::from_secs(5));
        assert_eq!(d.reserving(Duration::from_secs(9)), Duration::ZERO);
    }
}
