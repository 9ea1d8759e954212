//! scrip-merchant: the library point-of-sale integrators embed. Creates payment requests,
//! verifies a wallet's answer fully offline, countersigns or endorses, queues accepted
//! payments and settles them with the issuer when online.
//!
//! Not built yet: see the wallet and merchant issue.
