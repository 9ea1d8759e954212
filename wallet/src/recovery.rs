//! Recovery: what a user hands the issuer when a device is lost, and a backup of blind
//! coins (which nobody but the wallet can ever reissue: the issuer cannot link them).

use rand_core::CryptoRng;
use scrip_tokens::{
    codec, AccountId, Amount, BlindCoin, Coin, CoinId, DeviceId, Message, Timestamp,
};
use serde::{Deserialize, Serialize};

use crate::storage::{self, StorageKey};
use crate::{Result, Wallet, WalletError};

/// What the issuer needs to revoke a lost device and reissue its identified coins, and a
/// list of the blind coins it held (for the user's records; the issuer cannot reissue
/// those). Export it while the device works, keep it somewhere else.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoverySheet {
    /// The account.
    pub account_id: AccountId,
    /// The device to revoke.
    pub device_id: DeviceId,
    /// Identified coins held (revocable and reissuable by the issuer).
    pub identified_coins: Vec<(CoinId, Amount)>,
    /// Blind coins held (restore them from a backup; the issuer cannot).
    pub blind_coins: Vec<(CoinId, Amount)>,
    /// When the sheet was made.
    pub created_at: Timestamp,
}

impl Message for RecoverySheet {
    const TAG: &'static str = "scrip/wallet/recovery-sheet/v1";
    const VERSION: u16 = 1;
}

#[derive(Serialize, Deserialize)]
struct BlindCoinBackup {
    coins: Vec<BlindCoin>,
}

impl Message for BlindCoinBackup {
    const TAG: &'static str = "scrip/wallet/blind-coin-backup/v1";
    const VERSION: u16 = 1;
}

impl Wallet {
    /// The lost-device recovery sheet (coins in flight to a merchant included: they may
    /// come back).
    pub fn recovery_sheet(&self, now: Timestamp) -> Result<RecoverySheet> {
        let account = self.registered()?.payload.clone();
        let all = self.state.coins.iter().chain(
            self.state
                .coins_in_flight
                .iter()
                .flat_map(|f| f.coins.iter()),
        );
        let mut sheet = RecoverySheet {
            account_id: account.account_id,
            device_id: account.device_id,
            identified_coins: Vec::new(),
            blind_coins: Vec::new(),
            created_at: now,
        };
        for coin in all {
            match coin {
                Coin::Identified(_) => sheet.identified_coins.push((coin.id(), coin.amount())),
                Coin::Blind(_) => sheet.blind_coins.push((coin.id(), coin.amount())),
            }
        }
        Ok(sheet)
    }

    /// The blind coins held (and in flight), sealed with `key`, for a backup kept off the
    /// device.
    pub fn backup_blind_coins<G: CryptoRng + ?Sized>(
        &self,
        key: &StorageKey,
        rng: &mut G,
    ) -> Result<Vec<u8>> {
        let backup = BlindCoinBackup {
            // Coins in flight too: if the merchant never took them, they are the user's.
            coins: self
                .state
                .coins
                .iter()
                .chain(
                    self.state
                        .coins_in_flight
                        .iter()
                        .flat_map(|f| f.coins.iter()),
                )
                .filter_map(|c| match c {
                    Coin::Blind(b) => Some(b.clone()),
                    Coin::Identified(_) => None,
                })
                .collect(),
        };
        let plaintext = zeroize::Zeroizing::new(codec::encode(&backup)?);
        storage::seal(key, storage::Kind::BlindCoinBackup, &plaintext, rng)
    }

    /// Restores blind coins from a backup (on a new device of the account): adds those not
    /// held yet that still verify against the key directory. Coins spent since the backup
    /// will be refused as double spends when paid again. Returns how many were added.
    pub fn restore_blind_coins(
        &mut self,
        backup: &[u8],
        key: &StorageKey,
        now: Timestamp,
    ) -> Result<usize> {
        let plaintext = storage::open(key, storage::Kind::BlindCoinBackup, backup)?;
        let backup: BlindCoinBackup = codec::decode(&plaintext)?;
        let directory = self.directory.as_ref().ok_or(WalletError::NoDirectory)?;
        let mut added = 0;
        for coin in backup.coins {
            let coin = Coin::Blind(coin);
            if !self.holds(coin.id()) && coin.verify(directory, now).is_ok() {
                self.state.coins.push(coin);
                added += 1;
            }
        }
        self.touch();
        Ok(added)
    }
}
