//! scrip-wallet: the library wallet vendors embed in phone, card and desktop wallets.
//! A sans-IO message API (typed messages and their bytes, for NFC, BLE or QR) plus
//! encrypted persistence.
//!
//! Not built yet: see the wallet and merchant issue.
