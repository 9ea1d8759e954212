"""The whole story with a Python wallet and Python merchants against a real scrip-server:
account, deposit, blind coins, balance certificate, offline payment by record and by
coins, merchant settlement (accepted / already_accepted / double_spent), a wallet
restored from its sealed bytes, a merchant reopened from its durable queue."""

import gc
import time

import pytest

import scrip_sdk as scrip


def now():
    return int(time.time() * 1000)


class MemoryStore(scrip.WalletStore):
    """The app's storage: keeps every sealed state it was given (the last one is current)."""

    def __init__(self):
        self.history = []

    def save(self, sealed):
        self.history.append(bytes(sealed))

    @property
    def sealed(self):
        return self.history[-1]


class FailingStore(scrip.WalletStore):
    def save(self, sealed):
        raise scrip.ScripError.Storage("disk full")


def open_shop(client, server, tmp_path=None, name="shop"):
    setup = scrip.MerchantSetup.generate(5411, "DE-BY", now())
    certificate = client.register_merchant(setup.registration())
    queue = str(tmp_path / name) if tmp_path is not None else None
    shop = scrip.Merchant.open(
        setup.private_key(), certificate, server.root_key_pem, 1_000_000, "EUR", queue, now()
    )
    shop.refresh_directory(client.key_directory(), now())
    return shop, setup, certificate


def new_wallet(client, server):
    store = MemoryStore()
    key = scrip.new_storage_key()
    wallet = scrip.Wallet.create(server.root_key_pem, key, store)
    wallet.update_directory(client.key_directory(), now())
    registration = wallet.registration_request(now())
    account = wallet.on_account_opened(client.open_account(registration), now())
    assert account == wallet.account_id()
    return wallet, store, key


def fund(client, wallet, minor):
    record = client.deposit(wallet.deposit_request(minor, "EUR", now()))
    client.confirm_deposit(wallet.on_deposit_record(record, now()))


def withdraw(client, wallet, values):
    request = wallet.blind_withdrawal_request(values, "EUR", now())
    received = wallet.on_blind_withdrawal(request, client.withdraw_blind(request), now())
    assert len(received.coin_ids) == len(values)


def pay(wallet, shop, minor, method):
    offer = shop.offer(minor, now())
    summary = wallet.check_offer(offer, now())
    assert (summary.amount_minor, summary.currency) == (minor, "EUR")
    assert summary.merchant_id == shop.merchant_id()
    answer = wallet.pay(offer, method, now())
    acceptance = shop.accept(answer, now())
    return answer, acceptance


def test_the_whole_story(server, tmp_path):
    client = scrip.IssuerHttp(server.url, server.operator_token)
    # Trust on first use gives the same key the app pinned.
    assert client.root_key_pem().split() == server.root_key_pem.split()

    wallet, store, key = new_wallet(client, server)
    fund(client, wallet, 10_000)
    withdraw(client, wallet, [10, 2, 2, 1])
    assert wallet.balance("EUR", now()).coins_minor == 15

    request = wallet.certificate_request("EUR", 3_000, now())
    assert wallet.on_certificate_answer(client.balance_certificate(request), now()) == []
    assert wallet.balance("EUR", now()).offline_spendable_minor == 3_000

    shop_a, setup_a, certificate_a = open_shop(client, server, tmp_path, "queue-a")
    shop_b, _, _ = open_shop(client, server)

    # Offline: a withdrawal record under the certificate.
    _, acceptance = pay(wallet, shop_a, 750, scrip.PayMethod.RECORD)
    assert acceptance.accepted and acceptance.rejection_code is None
    assert wallet.on_merchant_reply(acceptance.reply, now()).completed
    assert wallet.balance("EUR", now()).offline_spendable_minor == 2_250

    # Offline: one blind coin. The sealed state from before it left is what a cheater
    # would restore later.
    before_the_coin = store.sealed
    answer, acceptance = pay(wallet, shop_a, 10, scrip.PayMethod.COINS)
    assert acceptance.accepted
    assert wallet.on_merchant_reply(acceptance.reply, now()).completed
    assert wallet.balance("EUR", now()).coins_minor == 5
    # The same answer again gets the same reply (a repeated tap is not a second sale).
    assert shop_a.accept(answer, now()).reply == acceptance.reply
    assert shop_a.unsettled_minor() == 760

    # Merchant A uploads; the answer is lost on the way; the retry is credited once.
    lost_batch = shop_a.build_batch(now())
    assert lost_batch is not None
    client.redeem(lost_batch)
    settled = client.settle(shop_a, now())
    assert (settled.accepted, settled.already_accepted, settled.double_spent) == (0, 2, 0)
    assert shop_a.unsettled_minor() == 0
    assert shop_a.build_batch(now()) is None

    # The customer hands in its copy of the record: the merchant was paid already.
    sync = wallet.sync_request(now())
    outcomes = wallet.on_sync_report(sync, client.sync(sync), now())
    assert [(o.amount_minor, o.outcome) for o in outcomes] == [(750, "already_accepted")]

    # A copy of the wallet restored from the old sealed bytes spends the coin again at
    # merchant B, who cannot know offline; the issuer refuses it at settlement.
    copy = scrip.Wallet.restore(before_the_coin, key, MemoryStore())
    assert copy.balance("EUR", now()).coins_minor == 15
    _, acceptance = pay(copy, shop_b, 10, scrip.PayMethod.COINS)
    assert acceptance.accepted
    settled = client.settle(shop_b, now())
    assert (settled.accepted, settled.double_spent) == (0, 1)

    # The real wallet, restored from its latest sealed bytes on a new phone, goes on.
    phone = scrip.Wallet.restore(store.sealed, key, MemoryStore())
    assert phone.account_id() == wallet.account_id()
    assert phone.balance("EUR", now()) == wallet.balance("EUR", now())
    _, acceptance = pay(phone, shop_a, 5, scrip.PayMethod.COINS)
    assert acceptance.accepted
    assert phone.on_merchant_reply(acceptance.reply, now()).completed
    assert phone.balance("EUR", now()).coins_minor == 0

    # The terminal restarts before settling: the payment is in its durable queue.
    del shop_a
    gc.collect()
    reopened = scrip.Merchant.open(
        setup_a.private_key(), certificate_a, server.root_key_pem, 1_000_000, "EUR",
        str(tmp_path / "queue-a"), now(),
    )
    assert reopened.unsettled_minor() == 5
    settled = client.settle(reopened, now())
    assert (settled.accepted, settled.already_accepted, settled.double_spent) == (1, 0, 0)


def test_exact_change_and_refusals_are_typed(server):
    client = scrip.IssuerHttp(server.url, server.operator_token)
    wallet, _, _ = new_wallet(client, server)
    fund(client, wallet, 1_000)
    withdraw(client, wallet, [5, 5])
    shop, _, _ = open_shop(client, server)
    offer = shop.offer(3, now())
    with pytest.raises(scrip.ScripError.ExactChangeImpossible) as e:
        wallet.pay(offer, scrip.PayMethod.COINS, now())
    assert (e.value.requested_minor, e.value.closest_below_minor, e.value.closest_above_minor) == (3, 0, 5)
    # Without a certificate there is nothing to pay by record with.
    with pytest.raises(scrip.ScripError.Wallet) as e:
        wallet.pay(offer, scrip.PayMethod.RECORD, now())
    assert e.value.code == "no_usable_certificate"
    # More than the account holds: the issuer's refusal, with its stable code.
    with pytest.raises(scrip.ScripError.Refused) as e:
        request = wallet.blind_withdrawal_request([20] * 60, "EUR", now())
        client.withdraw_blind(request)
    assert e.value.code in scrip.reason_codes()
    # A wrong operator token is refused too.
    with pytest.raises(scrip.ScripError.Refused):
        scrip.IssuerHttp(server.url, "not-the-token").register_merchant(
            scrip.MerchantSetup.generate(5411, "DE-BY", now()).registration()
        )


def test_nothing_is_released_when_the_app_cannot_store(server):
    client = scrip.IssuerHttp(server.url, server.operator_token)
    with pytest.raises(scrip.ScripError.Storage):
        scrip.Wallet.create(server.root_key_pem, scrip.new_storage_key(), FailingStore())
    wallet, store, key = new_wallet(client, server)
    failing = scrip.Wallet.restore(store.sealed, key, FailingStore())
    with pytest.raises(scrip.ScripError.Storage):
        failing.deposit_request(100, "EUR", now())
