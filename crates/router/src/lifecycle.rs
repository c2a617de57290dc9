//! The job state machine: every state a job can be in, every event that moves it, and the one
//! [`transition`] function through which every stored change of a job's state goes. A change
//! the table does not allow is refused before anything is written.
//!
//! ```text
//!            Placed                Began               Printing
//!   QUEUED ---------> ASSIGNED ----------> PREPARING ----------> PRINTING <--Resume-- PAUSED
//!     ^                |  |  ^                 |                    |   \--Pause-->    |
//!     |   Moved(queue) |  |  | Moved(placed)   |                    |                  |
//!     +----------------+  |  +-----------------+--------------------+------------------+
//!                         |   (any of ASSIGNED, PREPARING, PRINTING, PAUSED may be moved)
//!                         v
//!   Complete: ASSIGNED | PREPARING | PRINTING | PAUSED -> COMPLETED
//!   Fail, Cancel: any state that has not ended -> FAILED, CANCELLED
//! ```
//!
//! COMPLETED, FAILED and CANCELLED are final: no event leaves them. PREPARING is the node's
//! work before the first layer (download, slicing, heating), so "printing started" is said
//! only when the printer starts laying down the part. A node's report of being paused or
//! printing does not move the state: only the customer's pause and resume do, so that reports
//! crossing a command on the wire cannot make the state flap.

use std::fmt;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum JobState {
    /// Waiting for a capable printer to come online.
    #[default]
    Queued,
    /// Sent to a printer's node, which has not started on it.
    Assigned,
    /// The node is downloading, slicing or heating up for it.
    Preparing,
    /// The printer is laying down the part.
    Printing,
    /// Paused at the customer's request.
    Paused,
    Completed,
    Failed,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 8] = [
        JobState::Queued,
        JobState::Assigned,
        JobState::Preparing,
        JobState::Printing,
        JobState::Paused,
        JobState::Completed,
        JobState::Failed,
        JobState::Cancelled,
    ];

    /// Completed, failed or cancelled: nothing will change it any more.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Failed | JobState::Cancelled
        )
    }

    /// On a printer's node: assigned, preparing, printing or paused.
    pub fn on_printer(self) -> bool {
        matches!(
            self,
            JobState::Assigned | JobState::Preparing | JobState::Printing | JobState::Paused
        )
    }

    /// The node has started on it: its loss on the node loses work (a grace applies).
    pub fn started(self) -> bool {
        matches!(
            self,
            JobState::Preparing | JobState::Printing | JobState::Paused
        )
    }

    pub fn word(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Assigned => "assigned",
            JobState::Preparing => "preparing",
            JobState::Printing => "printing",
            JobState::Paused => "paused",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

/// What can happen to a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    /// A printer was chosen for a queued job.
    Placed,
    /// Taken off its printer: to another printer (`placed`) or back to the queue.
    Moved { placed: bool },
    /// The node reports work before the first layer (download, slicing, heating).
    Began,
    /// The node reports the printer laying down the part.
    Printing,
    /// The customer paused it.
    Pause,
    /// The customer resumed it.
    Resume,
    /// The node reports the part done.
    Complete,
    /// It cannot be printed (the job's fault, or re-routed too often).
    Fail,
    /// The customer cancelled it.
    Cancel,
}

impl Event {
    pub const ALL: [Event; 10] = [
        Event::Placed,
        Event::Moved { placed: true },
        Event::Moved { placed: false },
        Event::Began,
        Event::Printing,
        Event::Pause,
        Event::Resume,
        Event::Complete,
        Event::Fail,
        Event::Cancel,
    ];
}

/// An event that may not happen in a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {from} job cannot be {}", event_words(*.event))]
pub struct IllegalTransition {
    pub from: JobState,
    pub event: Event,
}

fn event_words(e: Event) -> &'static str {
    match e {
        Event::Placed => "placed on a printer",
        Event::Moved { .. } => "moved off its printer",
        Event::Began => "prepared",
        Event::Printing => "printed",
        Event::Pause => "paused",
        Event::Resume => "resumed",
        Event::Complete => "completed",
        Event::Fail => "failed",
        Event::Cancel => "cancelled",
    }
}

/// The state after `event` happens in state `from`, or why it cannot. Reports that repeat
/// what is already known (`Began` while printing) leave the state as it is.
pub fn transition(from: JobState, event: Event) -> Result<JobState, IllegalTransition> {
    use JobState as S;
    let illegal = Err(IllegalTransition { from, event });
    if from.is_terminal() {
        return illegal;
    }
    Ok(match (event, from) {
        (Event::Placed, S::Queued) => S::Assigned,
        (Event::Moved { placed }, s) if s.on_printer() => {
            if placed {
                S::Assigned
            } else {
                S::Queued
            }
        }
        (Event::Began, S::Assigned) => S::Preparing,
        (Event::Began, s @ (S::Preparing | S::Printing | S::Paused)) => s,
        (Event::Printing, S::Assigned | S::Preparing) => S::Printing,
        (Event::Printing, s @ (S::Printing | S::Paused)) => s,
        (Event::Pause, S::Printing) => S::Paused,
        (Event::Resume, S::Paused) => S::Printing,
        (Event::Complete, s) if s.on_printer() => S::Completed,
        (Event::Fail, _) => S::Failed,
        (Event::Cancel, _) => S::Cancelled,
        _ => return illegal,
    })
}

/// Whether some event moves a job from `from` to `to` (or keeps it there): what a stored
/// history must consist of.
pub fn reachable_in_one_step(from: JobState, to: JobState) -> bool {
    Event::ALL.iter().any(|&e| transition(from, e) == Ok(to))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The table above, written out edge by edge: a change to `transition` that adds or
    /// drops an edge fails here.
    const EDGES: &[(JobState, JobState)] = {
        use JobState::*;
        &[
            (Queued, Assigned),
            (Queued, Failed),
            (Queued, Cancelled),
            (Assigned, Assigned),
            (Assigned, Queued),
            (Assigned, Preparing),
            (Assigned, Printing),
            (Assigned, Completed),
            (Assigned, Failed),
            (Assigned, Cancelled),
            (Preparing, Assigned),
            (Preparing, Queued),
            (Preparing, Preparing),
            (Preparing, Printing),
            (Preparing, Completed),
            (Preparing, Failed),
            (Preparing, Cancelled),
            (Printing, Assigned),
            (Printing, Queued),
            (Printing, Printing),
            (Printing, Paused),
            (Printing, Completed),
            (Printing, Failed),
            (Printing, Cancelled),
            (Paused, Assigned),
            (Paused, Queued),
            (Paused, Paused),
            (Paused, Printing),
            (Paused, Completed),
            (Paused, Failed),
            (Paused, Cancelled),
        ]
    };

    #[test]
    fn the_graph_is_exactly_the_documented_one() {
        for from in JobState::ALL {
            for to in JobState::ALL {
                assert_eq!(
                    reachable_in_one_step(from, to),
                    EDGES.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn preparing_is_not_printing() {
        assert_eq!(
            transition(JobState::Assigned, Event::Began),
            Ok(JobState::Preparing)
        );
        assert_eq!(
            transition(JobState::Preparing, Event::Printing),
            Ok(JobState::Printing)
        );
        // A late "slicing" report after printing began does not move it back.
        assert_eq!(
            transition(JobState::Printing, Event::Began),
            Ok(JobState::Printing)
        );
    }

    #[test]
    fn only_a_printing_job_pauses_and_only_a_paused_one_resumes() {
        for s in JobState::ALL {
            assert_eq!(
                transition(s, Event::Pause).is_ok(),
                s == JobState::Printing,
                "{s}"
            );
            assert_eq!(
                transition(s, Event::Resume).is_ok(),
                s == JobState::Paused,
                "{s}"
            );
        }
    }

    #[test]
    fn the_refusal_says_what_and_from_where() {
        let e = transition(JobState::Completed, Event::Cancel).unwrap_err();
        assert_eq!(e.to_string(), "a completed job cannot be cancelled");
    }

    fn event() -> impl Strategy<Value = Event> {
        (0..Event::ALL.len()).prop_map(|i| Event::ALL[i])
    }

    proptest! {
        /// Any sequence of events, applied where allowed: every state reached is reached by
        /// an edge of the graph, nothing leaves a final state, and a job that ended stays as
        /// it ended.
        #[test]
        fn random_event_sequences_only_walk_the_graph(events in proptest::collection::vec(event(), 0..64)) {
            let mut state = JobState::Queued;
            let mut ended: Option<JobState> = None;
            for e in events {
                match transition(state, e) {
                    Ok(next) => {
                        prop_assert!(EDGES.contains(&(state, next)), "{state} -> {next} by {e:?}");
                        prop_assert!(ended.is_none(), "{state} left by {e:?}");
                        state = next;
                        if state.is_terminal() {
                            ended = Some(state);
                        }
                    }
                    Err(refused) => {
                        prop_assert_eq!(refused.from, state);
                    }
                }
            }
            if let Some(end) = ended {
                prop_assert_eq!(state, end);
            }
        }
    }
}
