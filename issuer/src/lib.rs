//! scrip-issuer: the account management system. Accounts, certificates, deposits, coin
//! issuance, redemption and reconciliation, generic over the record store; the warp
//! `scrip-server` binary lives here too.
//!
//! Not built yet: see the issuer-core and server issues.
