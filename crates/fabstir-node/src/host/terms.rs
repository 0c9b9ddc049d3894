//! A job's terms and the one check of them against what this host offers. Every way a job
//! reaches the host goes through it: a quote request, a job announced on chain, a job a peer
//! names, and the client that opens a stream for a job.

use fabstir_contracts::OnChainJob;
use fabstir_core::primitives::Address;
use fabstir_core::wire::{QuoteRequest, RejectReason};
use fabstir_core::{ModelId, TokenAmount};

use fabstir_core::clock::unix_now;

use super::Host;

/// What a client asks of a host, from a quote request, a job on chain or its `JobPosted`
/// event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Terms {
    /// The model to run.
    pub(crate) model: ModelId,
    /// The payment token.
    pub(crate) token: Address,
    /// The most the client pays per token.
    pub(crate) price_per_token: TokenAmount,
    /// The most tokens to generate.
    pub(crate) max_tokens: u32,
    /// The only host that may take the job; `None` for any host, and for a quote (asked of
    /// this host).
    pub(crate) host: Option<Address>,
    /// Who posts and pays.
    pub(crate) client: Address,
    /// Unix time after which the job can be expired; `None` for a quote.
    pub(crate) deadline: Option<u64>,
    /// The escrow; `None` for a quote.
    pub(crate) amount: Option<TokenAmount>,
}

impl Terms {
    /// The terms a client asks a quote for.
    pub(crate) fn of_quote(request: &QuoteRequest) -> Self {
        Self {
            model: request.model,
            token: request.token,
            price_per_token: request.offered_price_per_token,
            max_tokens: request.max_tokens,
            host: None,
            client: request.client,
            deadline: None,
            amount: None,
        }
    }

    /// The terms of a job on chain (its host is the assigned one while it is posted).
    pub(crate) fn of_job(job: &OnChainJob) -> Self {
        Self {
            model: job.details.model,
            token: job.token,
            price_per_token: job.details.price_per_token,
            max_tokens: job.details.max_tokens,
            host: job.host,
            client: job.client,
            deadline: Some(job.details.deadline),
            amount: Some(job.amount),
        }
    }

    /// Whether `client` (authenticated on a stream) is the one who posted the job.
    pub(crate) fn check_client(&self, client: Address) -> Result<(), Refusal> {
        if self.client == client {
            Ok(())
        } else {
            Err(Refusal::NotTheClient(client))
        }
    }
}

/// Why a host does not take a job on its terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    /// The job is assigned to another host.
    #[error("job names host {0:#x}")]
    OtherHost(Address),
    /// The model is not served here.
    #[error("model {0} not served")]
    ModelNotServed(ModelId),
    /// The model is served, but not paid in this token.
    #[error("token {0:#x} not accepted")]
    TokenNotAccepted(Address),
    /// The job pays less per token than this host's price (carried).
    #[error("price per token is {}", .0.base_units())]
    PriceTooLow(TokenAmount),
    /// The job asks for more tokens than this host generates per job (carried).
    #[error("at most {0} tokens per job")]
    TooManyTokens(u32),
    /// The job ends too soon for this host to serve and settle it.
    #[error("too little time before the deadline")]
    DeadlineTooSoon,
    /// The escrow is not `max_tokens x price`: the host would work for less than its price.
    #[error("the escrow does not cover max tokens at the price")]
    Underfunded,
    /// Someone else than the job's client asks for it.
    #[error("{0:#x} is not the client")]
    NotTheClient(Address),
}

impl Refusal {
    /// The reason a peer is told.
    pub(crate) fn reason(&self) -> RejectReason {
        match self {
            Self::OtherHost(_)
            | Self::DeadlineTooSoon
            | Self::Underfunded
            | Self::NotTheClient(_) => RejectReason::TermsMismatch,
            Self::ModelNotServed(_) => RejectReason::UnknownModel,
            Self::TokenNotAccepted(_) => RejectReason::TokenNotAccepted,
            Self::PriceTooLow(_) => RejectReason::PriceTooLow,
            Self::TooManyTokens(_) => RejectReason::TooManyTokens,
        }
    }
}

impl Host {
    /// Checks `terms` against this host: the assigned host, the model, the token, the price,
    /// the number of tokens, the escrow (exactly `max_tokens x price`) and the time left (at
    /// least the host's `min_time_left`), in that order. Returns the host's price per token.
    pub(crate) fn check_terms(&self, terms: &Terms) -> Result<TokenAmount, Refusal> {
        if let Some(host) = terms.host
            && host != self.address
        {
            return Err(Refusal::OtherHost(host));
        }
        let model = self
            .models
            .get(&terms.model)
            .ok_or(Refusal::ModelNotServed(terms.model))?;
        let price = model
            .price(terms.token)
            .ok_or(Refusal::TokenNotAccepted(terms.token))?;
        if terms.price_per_token < price {
            return Err(Refusal::PriceTooLow(price));
        }
        if terms.max_tokens > self.limits.max_tokens {
            return Err(Refusal::TooManyTokens(self.limits.max_tokens));
        }
        let expected = terms.price_per_token.checked_mul(terms.max_tokens);
        if terms.amount.is_some_and(|amount| Some(amount) != expected) {
            return Err(Refusal::Underfunded);
        }
        let soonest = unix_now() + self.limits.min_time_left.as_secs();
        if terms.deadline.is_some_and(|deadline| deadline < soonest) {
            return Err(Refusal::DeadlineTooSoon);
        }
        Ok(price)
    }
}
