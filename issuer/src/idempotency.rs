//! Requests answered once. The unit that does a request's work also claims the request
//! and stores the answer under it, so a retry, or a concurrent twin that lost the race,
//! reads the first answer back instead of doing the work (and moving the money) twice.
//! The same claim for a different request is refused.

use scrip_stores::{ClaimId, Collection, CommitOutcome, ExistingClaim, RecordStore, Unit, Write};
use scrip_tokens::{ContentDigest, Message};

use crate::{encode, FundingSource, Issuer, IssuerError, Result};

/// An idempotent request: the claim that guards it, the digest of what it asks (not of
/// when it was signed: a retry is signed again), and where its answer is kept.
pub(crate) struct Idempotent {
    pub(crate) claim: ClaimId,
    pub(crate) digest: ContentDigest,
    pub(crate) answers: Collection,
    pub(crate) answer_key: Vec<u8>,
}

/// What the store's outcome of a request's unit means for the request.
#[derive(Debug, PartialEq)]
enum Verdict {
    /// This unit was applied: its own answer stands.
    Applied,
    /// This very request was answered before (by a first attempt, or by a concurrent twin
    /// that won): the stored answer stands.
    AnsweredBefore,
    /// The claim is held for a different request.
    KeyReused,
    /// Nothing was applied, for a reason that is not this request's claim (another claim
    /// of the unit, a floor).
    NotApplied(CommitOutcome),
}

/// What committing an idempotent request gave.
pub(crate) enum Answered<T> {
    /// The request's answer: this call's, or the one stored by its first answer.
    Answer(T),
    /// Nothing was applied, for a reason that is not this request's claim: the caller
    /// decides (read again, refuse).
    NotApplied(CommitOutcome),
}

impl Idempotent {
    /// Whether `held`, an existing claim of this request's id, was made by this very
    /// request.
    fn is_this_request(&self, held: &ExistingClaim) -> bool {
        held.digest == self.digest
    }

    fn verdict(&self, outcome: CommitOutcome) -> Verdict {
        let held = match &outcome {
            CommitOutcome::Committed => return Verdict::Applied,
            CommitOutcome::Repeated { .. } => return Verdict::AnsweredBefore,
            CommitOutcome::InsufficientFunds { .. } => return Verdict::NotApplied(outcome),
            CommitOutcome::Conflict(report) => report
                .iter()
                .find(|(id, _)| *id == self.claim)
                .and_then(|(_, held)| held.as_ref()),
        };
        match held {
            Some(held) if self.is_this_request(held) => Verdict::AnsweredBefore,
            Some(_) => Verdict::KeyReused,
            None => Verdict::NotApplied(outcome),
        }
    }
}

/// For an outcome a unit cannot get (a floor failing on a unit without floors): the
/// store broke its contract.
pub(crate) fn impossible_outcome(operation: &str, outcome: &CommitOutcome) -> IssuerError {
    IssuerError::Corrupted(format!("{operation}: the store answered {outcome:?}"))
}

impl<S: RecordStore, F: FundingSource> Issuer<S, F> {
    /// The answer `request` got before, if it was answered; `IdempotencyKeyReused` if its
    /// claim is held for another request.
    pub(crate) async fn previous_answer<T: Message>(
        &self,
        request: &Idempotent,
    ) -> Result<Option<T>> {
        let held = self
            .store
            .claims(std::slice::from_ref(&request.claim))
            .await?
            .pop()
            .flatten();
        match held {
            None => Ok(None),
            Some(held) if request.is_this_request(&held) => {
                self.stored_answer(request).await.map(Some)
            }
            Some(_) => Err(IssuerError::IdempotencyKeyReused),
        }
    }

    /// The stored answer to `request` if a copy of it was done, else `refusal`. For a
    /// refusal by a check whose input a concurrent copy changes (the balance its debit
    /// lowered): the copy stored its answer in the same unit as that change, so a read
    /// after the check's finds it, and the copy sent second gets the first's answer, as a
    /// retry after it would, instead of being refused for the first's own effect.
    pub(crate) async fn answered_or<T: Message>(
        &self,
        request: &Idempotent,
        refusal: IssuerError,
    ) -> Result<T> {
        match self.previous_answer(request).await? {
            Some(answer) => Ok(answer),
            None => Err(refusal),
        }
    }

    /// Commits `unit` together with the request's claim and `answer` stored under it.
    pub(crate) async fn commit_answered<T: Message>(
        &self,
        unit: Unit,
        request: &Idempotent,
        answer: T,
    ) -> Result<Answered<T>> {
        let unit = unit
            .claim(request.claim.clone(), request.digest)
            .write(Write::put(
                request.answers,
                request.answer_key.clone(),
                encode(&answer)?,
            ));
        match request.verdict(self.store.commit(unit).await?) {
            Verdict::Applied => Ok(Answered::Answer(answer)),
            Verdict::AnsweredBefore => self.stored_answer(request).await.map(Answered::Answer),
            Verdict::KeyReused => Err(IssuerError::IdempotencyKeyReused),
            Verdict::NotApplied(outcome) => Ok(Answered::NotApplied(outcome)),
        }
    }

    async fn stored_answer<T: Message>(&self, request: &Idempotent) -> Result<T> {
        // The unit that claimed the request stored its answer in the same write.
        self.doc(request.answers, &request.answer_key)
            .await?
            .ok_or_else(|| {
                IssuerError::Corrupted(format!(
                    "{}: a request claimed without its answer",
                    request.answers.name()
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use scrip_stores::{Claimant, LedgerAccount};
    use scrip_tokens::{Currency, Timestamp};

    use super::*;

    fn request() -> Idempotent {
        Idempotent {
            claim: ClaimId::Idempotency {
                scope: uuid::Uuid::from_u128(1),
                key: [7; 32],
            },
            digest: ContentDigest::of(b"the request"),
            answers: Collection::new("responses"),
            answer_key: b"answer".to_vec(),
        }
    }

    fn held(digest: ContentDigest) -> Option<ExistingClaim> {
        Some(ExistingClaim {
            claimant: Claimant::Issuer,
            claimed_at: Timestamp::from_unix_millis(5),
            digest,
        })
    }

    fn other_claim() -> ClaimId {
        ClaimId::Record(scrip_tokens::RecordId(uuid::Uuid::from_u128(2)))
    }

    #[test]
    fn a_retry_gets_the_first_answer() {
        let r = request();
        let outcome = CommitOutcome::Repeated {
            first_claimed_at: Timestamp::from_unix_millis(5),
        };
        assert_eq!(r.verdict(outcome), Verdict::AnsweredBefore);
        assert_eq!(r.verdict(CommitOutcome::Committed), Verdict::Applied);
    }

    #[test]
    fn a_concurrent_twin_that_won_answers_for_both() {
        // The twin's unit differs (another serial, another sequence range), so the store
        // reports a conflict, but the request's own claim is held for this request.
        let r = request();
        let report = vec![
            (other_claim(), held(ContentDigest::of(b"other"))),
            (r.claim.clone(), held(r.digest)),
        ];
        assert_eq!(
            r.verdict(CommitOutcome::Conflict(report)),
            Verdict::AnsweredBefore
        );
    }

    #[test]
    fn the_same_key_for_another_request_is_refused() {
        let r = request();
        let report = vec![(r.claim.clone(), held(ContentDigest::of(b"another request")))];
        assert_eq!(
            r.verdict(CommitOutcome::Conflict(report)),
            Verdict::KeyReused
        );
    }

    #[test]
    fn losing_another_claim_or_a_floor_is_left_to_the_caller() {
        let r = request();
        let report = vec![
            (r.claim.clone(), None),
            (other_claim(), held(ContentDigest::of(b"other"))),
        ];
        let conflict = CommitOutcome::Conflict(report);
        assert_eq!(r.verdict(conflict.clone()), Verdict::NotApplied(conflict));
        let floor = CommitOutcome::InsufficientFunds {
            account: LedgerAccount::System("test".into()),
            currency: Currency::EUR,
            balance_after: -1,
            min: 0,
        };
        assert_eq!(r.verdict(floor.clone()), Verdict::NotApplied(floor));
    }
}
