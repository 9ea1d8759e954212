"""The other steps through the SDK against the real server: identified coins, the
revocation list on both sides, coins back from an unanswered payment, refunds by record
and by voucher, statements, a payout, a second device, a blind-coin backup, swaps (change
before going offline, a lost answer sent again, coins spent before)."""

import time

import pytest

import scrip_sdk as scrip
from test_story import MemoryStore, fund, new_wallet, open_shop, pay, withdraw


def now():
    return int(time.time() * 1000)


@pytest.fixture
def client(server):
    return scrip.IssuerHttp(server.url, server.operator_token)


def test_identified_coins_revocations_and_coins_taken_back(client, server):
    wallet, store, key = new_wallet(client, server)
    fund(client, wallet, 500)
    request = wallet.identified_withdrawal_request([5, 2], "EUR", now())
    received = wallet.on_identified_withdrawal(request, client.withdraw_identified(request), now())
    assert len(received.coin_ids) == 2
    assert wallet.balance("EUR", now()).coins_minor == 7

    # The revocation list: applied, kept beside the sealed state, restored with it.
    assert wallet.revocation_version() == 0
    wallet.update_revocations(client.revocations(None), now())
    state = wallet.revocation_state()
    restored = scrip.Wallet.restore(store.sealed, key, MemoryStore())
    restored.set_revocation_state(state)
    assert restored.revocation_version() == wallet.revocation_version()

    shop, _, _ = open_shop(client, server)
    shop.refresh_revocations(client.revocations(None), now())
    # A payment whose answer never reached the merchant: the coins come back.
    offer = shop.offer(7, now())
    request_id = wallet.check_offer(offer, now()).request_id
    wallet.pay(offer, scrip.PayMethod.COINS, now())
    assert wallet.balance("EUR", now()).coins_minor == 0
    assert wallet.take_back_unanswered_coins(request_id) == 2
    assert wallet.balance("EUR", now()).coins_minor == 7
    with pytest.raises(scrip.ScripError.Wallet) as e:
        wallet.take_back_unanswered_coins(request_id)
    assert e.value.code == "no_coins_in_flight"
    with pytest.raises(scrip.ScripError.BadArgument):
        wallet.take_back_unanswered_coins("not-a-uuid")


def test_refunds_statements_and_a_payout(client, server):
    wallet, _, _ = new_wallet(client, server)
    fund(client, wallet, 5_000)
    withdraw(client, wallet, [20, 10])
    request = wallet.certificate_request("EUR", 2_000, now())
    wallet.on_certificate_answer(client.balance_certificate(request), now())
    shop, _, _ = open_shop(client, server)

    record_offer = shop.offer(1_000, now())
    record_request = wallet.check_offer(record_offer, now()).request_id
    answer = wallet.pay(record_offer, scrip.PayMethod.RECORD, now())
    assert wallet.on_merchant_reply(shop.accept(answer, now()).reply, now()).completed
    _, acceptance = pay(wallet, shop, 20, scrip.PayMethod.COINS)
    assert wallet.on_merchant_reply(acceptance.reply, now()).completed
    assert client.settle(shop, now()).accepted == 2

    # A refund by record goes to the account; the retry under the same id pays once.
    refund = shop.refund_request(record_request, 300, None, now())
    first = shop.verify_refund_receipt(refund.request, client.refund(refund.request), now())
    again = shop.refund_request(record_request, 300, refund.refund_id, now())
    second = shop.verify_refund_receipt(again.request, client.refund(again.request), now())
    assert first == second
    assert (first.amount_minor, first.refunded_total_minor) == (300, 300)
    assert first.account_id == wallet.account_id()

    # The customer's statement shows deposit, payment and refund.
    statement_request = wallet.statement_request("EUR", None, 100, now())
    statement = wallet.verify_statement(statement_request, client.statement(statement_request), now())
    assert statement.currency == "EUR"
    assert [line.delta_minor for line in statement.lines][:1] == [5_000]
    assert 300 in [line.delta_minor for line in statement.lines]
    assert statement.balance_minor == statement.lines[-1].balance_after_minor

    # The merchant's statement, then it is paid out what it is owed.
    merchant_statement = client.merchant_statement(shop, None, 100, now())
    owed = merchant_statement.balance_minor
    assert owed == 1_000 + 20 - 300
    payout_id = scrip.new_id()
    receipt = client.payout(shop, payout_id, owed, now())
    assert receipt.paid and receipt.payout_id == payout_id and receipt.amount_minor == owed
    assert client.payout(shop, payout_id, owed, now()) == receipt  # a retry pays once


def test_a_voucher_refund_of_a_coin_payment(client, server):
    wallet, _, _ = new_wallet(client, server)
    fund(client, wallet, 100)
    withdraw(client, wallet, [10])
    shop, _, _ = open_shop(client, server)
    offer = shop.offer(10, now())
    request_id = wallet.check_offer(offer, now()).request_id
    answer = wallet.pay(offer, scrip.PayMethod.COINS, now())
    assert wallet.on_merchant_reply(shop.accept(answer, now()).reply, now()).completed
    assert client.settle(shop, now()).accepted == 1
    voucher = shop.refund_voucher(request_id, 10, now())
    # Anyone holding the voucher bytes withdraws fresh blind coins against it, once.
    other, _, _ = new_wallet(client, server)
    request = other.voucher_withdrawal_request(voucher, now())
    received = other.on_voucher_withdrawal(request, client.withdraw_voucher(request), now())
    assert received.coin_ids
    assert other.balance("EUR", now()).coins_minor == 10
    with pytest.raises(scrip.ScripError.Refused):
        client.withdraw_voucher(wallet.voucher_withdrawal_request(voucher, now()))


def test_a_second_device_and_a_blind_coin_backup(client, server):
    wallet, _, _ = new_wallet(client, server)
    fund(client, wallet, 100)
    withdraw(client, wallet, [5, 2])

    tablet = scrip.Wallet.create(server.root_key_pem, scrip.new_storage_key(), MemoryStore())
    tablet.update_directory(client.key_directory(), now())
    registration = tablet.join_request(wallet.account_id(), now())
    approval = wallet.approve_device(registration, now())
    tablet.on_device_enrolled(client.enroll_device(registration, approval), now())
    assert tablet.account_id() == wallet.account_id()

    backup_key = scrip.new_storage_key()
    backup = wallet.backup_blind_coins(backup_key)
    assert tablet.restore_blind_coins(backup, backup_key, now()) == 2
    assert tablet.balance("EUR", now()).coins_minor == 7
    assert tablet.restore_blind_coins(backup, backup_key, now()) == 0  # held already
    with pytest.raises(scrip.ScripError.WrongKeyOrCorrupted):
        tablet.restore_blind_coins(backup, scrip.new_storage_key(), now())


def revoke_merchant(server, merchant_id):
    """The operator revokes a merchant (the operator API, not part of the SDK)."""
    import json
    import urllib.request

    request = urllib.request.Request(
        f"{server.url}/v1/merchants/{merchant_id}/revoke",
        data=json.dumps({"reason": "sdk test"}).encode(),
        headers={"content-type": "application/json", "x-scrip-operator": server.operator_token},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200


def test_a_revoked_merchant_is_refused_and_the_list_survives_a_restore(client, server):
    wallet, store, key = new_wallet(client, server)
    shop, _, _ = open_shop(client, server)
    offer = shop.offer(5, now())
    wallet.check_offer(offer, now())  # not revoked yet
    revoke_merchant(server, shop.merchant_id())
    wallet.update_revocations(client.revocations(wallet.revocation_version()), now())
    assert wallet.revocation_version() >= 1
    with pytest.raises(scrip.ScripError.Wallet) as e:
        wallet.check_offer(offer, now())
    assert e.value.code == "merchant_revoked"
    # The list is not in the sealed state: a restored wallet needs it given back.
    restored = scrip.Wallet.restore(store.sealed, key, MemoryStore())
    restored.check_offer(offer, now())
    restored.set_revocation_state(wallet.revocation_state())
    assert restored.revocation_version() == wallet.revocation_version()
    with pytest.raises(scrip.ScripError.Wallet) as e:
        restored.check_offer(offer, now())
    assert e.value.code == "merchant_revoked"


class FlakyStore(MemoryStore):
    """Storage that can be made to fail, or to call back into the wallet from save."""

    def __init__(self):
        super().__init__()
        self.fail = False
        self.wallet = None
        self.inner_errors = []

    def save(self, sealed):
        if self.wallet is not None:
            try:
                self.wallet.balance("EUR", now())
            except scrip.ScripError as e:
                self.inner_errors.append(e)
        if self.fail:
            raise scrip.ScripError.Storage("disk full")
        super().save(sealed)


def test_a_payment_whose_state_cannot_be_stored_is_not_made_and_can_be_retried(client, server):
    store = FlakyStore()
    key = scrip.new_storage_key()
    wallet = scrip.Wallet.create(server.root_key_pem, key, store)
    wallet.update_directory(client.key_directory(), now())
    wallet.on_account_opened(client.open_account(wallet.registration_request(now())), now())
    fund(client, wallet, 1_000)
    withdraw(client, wallet, [5, 2])
    request = wallet.certificate_request("EUR", 500, now())
    wallet.on_certificate_answer(client.balance_certificate(request), now())
    shop, _, _ = open_shop(client, server)

    for method, amount in ((scrip.PayMethod.COINS, 7), (scrip.PayMethod.RECORD, 300)):
        offer = shop.offer(amount, now())
        before = wallet.balance("EUR", now())
        saved = len(store.history)
        store.fail = True
        with pytest.raises(scrip.ScripError.Storage) as e:
            wallet.pay(offer, method, now())
        assert e.value.message == "disk full"  # the app's own error, not wrapped again
        store.fail = False
        # Nothing was handed over, nothing stored, and the same offer can be paid now.
        assert len(store.history) == saved
        assert wallet.balance("EUR", now()) == before
        answer = wallet.pay(offer, method, now())
        acceptance = shop.accept(answer, now())
        assert acceptance.accepted
        assert wallet.on_merchant_reply(acceptance.reply, now()).completed
    assert client.settle(shop, now()).accepted == 2
    # The state last stored is the wallet's: a restore sees both payments made.
    restored = scrip.Wallet.restore(store.sealed, key, MemoryStore())
    assert restored.balance("EUR", now()) == wallet.balance("EUR", now())

    # A save that calls back into the same wallet gets an error instead of a deadlock.
    store.wallet = wallet
    wallet.sync_request(now())
    wallet.update_directory(client.key_directory(), now())
    assert [e.code for e in store.inner_errors] == ["reentrant_call"]


def test_requests_signed_again_for_a_retry_are_answered_once(client, server):
    wallet, _, _ = new_wallet(client, server)
    request = wallet.deposit_request(400, "EUR", now())
    first = client.deposit(request)  # the answer is "lost"
    # The same bytes again are a replay; signed again they are the same deposit.
    with pytest.raises(scrip.ScripError.Refused) as e:
        client.deposit(request)
    assert e.value.code == "replayed"
    again = client.deposit(wallet.resign_deposit_request(request, now()))
    assert again == first
    client.confirm_deposit(wallet.on_deposit_record(again, now()))

    request = wallet.certificate_request("EUR", 100, now())
    client.balance_certificate(request)  # lost
    answer = client.balance_certificate(wallet.resign_certificate_request(now()))
    wallet.on_certificate_answer(answer, now())
    assert wallet.balance("EUR", now()).offline_spendable_minor == 100
    with pytest.raises(scrip.ScripError.Wallet) as e:
        wallet.resign_certificate_request(now())
    assert e.value.code == "no_pending_certificate_request"


def test_identified_coins_are_swapped_for_blind_coins_signed_by_the_device(client, server):
    wallet, store, key = new_wallet(client, server)
    fund(client, wallet, 100)
    request = wallet.identified_withdrawal_request([5, 2], "EUR", now())
    wallet.on_identified_withdrawal(request, client.withdraw_identified(request), now())
    swap = wallet.identified_swap_request("EUR", now())
    assert swap is not None and wallet.swap_hands_in_identified(swap)
    # Unsigned, the issuer refuses it: identified coins are swapped only by their holder.
    with pytest.raises(scrip.ScripError.Refused) as e:
        client.swap(swap)
    assert e.value.code == "unsupported"
    receipt = client.device_swap(wallet.sign_swap(swap, now()))
    done = wallet.on_swap_receipt(swap, receipt, now())
    assert done.swapped and len(done.new_coin_ids) >= 3
    assert wallet.balance("EUR", now()).coins_minor == 7
    assert wallet.identified_swap_request("EUR", now()) is None


def test_change_made_online_pays_offline_and_a_lost_answer_is_sent_again(client, server):
    wallet, store, key = new_wallet(client, server)
    fund(client, wallet, 100)
    withdraw(client, wallet, [10, 10])
    shop, _, _ = open_shop(client, server)
    # Two tens cannot pay 3 offline; change made online can.
    with pytest.raises(scrip.ScripError.ExactChangeImpossible):
        wallet.pay(shop.offer(3, now()), scrip.PayMethod.COINS, now())
    request = wallet.change_request([3, 4], "EUR", now())
    assert request is not None
    receipt = client.swap(request)
    # The answer is lost and the phone restarts: the request is pending, sent again.
    restored = scrip.Wallet.restore(store.sealed, key, store)
    assert restored.pending_swaps() == [request]
    assert restored.balance("EUR", now()).coins_minor == 0
    again = client.swap(request)
    done = restored.on_swap_receipt(request, again, now())
    assert done.swapped and len(done.new_coin_ids) > 2
    assert restored.balance("EUR", now()).coins_minor == 20
    assert restored.pending_swaps() == []
    for minor in (3, 4):
        answer = restored.pay(shop.offer(minor, now()), scrip.PayMethod.COINS, now())
        assert restored.on_merchant_reply(shop.accept(answer, now()).reply, now()).completed
    assert client.settle(shop, now()).accepted == 2
    assert restored.change_request([1, 2], "EUR", now()) is None
    assert restored.refresh_request(now()) is None
    # The first receipt, for the same request, applies nowhere now.
    with pytest.raises(scrip.ScripError.Wallet):
        restored.on_swap_receipt(request, receipt, now())

