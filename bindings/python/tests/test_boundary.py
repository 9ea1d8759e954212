"""Nothing crosses the boundary as a crash: garbage through every entry point that takes
bytes or text raises a typed ScripError. And the SDK reports the versions it speaks; a
sealed state of another format version is refused with a clear error, one of this
version (from the committed fixture an earlier build sealed) opens."""

import os
import pathlib
import random
import time

import pytest

import scrip_sdk as scrip

FIXTURES = pathlib.Path(__file__).parent / "fixtures"


def now():
    return int(time.time() * 1000)


class Keep(scrip.WalletStore):
    def __init__(self):
        self.sealed = None

    def save(self, sealed):
        self.sealed = bytes(sealed)


def garbage():
    """Empty, random, truncated-header and other-type inputs."""
    rng = random.Random(20261129)
    samples = [b"", b"\x00", bytes(rng.getrandbits(8) for _ in range(300))]
    samples += [os.urandom(n) for n in (1, 7, 64, 4096)]
    # A well-formed header of some other message type, then junk.
    samples.append(b"scrip/withdrawal-record/v1\x00\x01\x00" + os.urandom(40))
    # A length prefix claiming gigabytes.
    samples.append(b"scrip/merchant-offer/v1\x00\x01\x00" + b"\xff" * 16)
    return samples


@pytest.fixture(scope="module")
def parts(server):
    client = scrip.IssuerHttp(server.url, server.operator_token)
    store = Keep()
    key = scrip.new_storage_key()
    wallet = scrip.Wallet.create(server.root_key_pem, key, store)
    wallet.update_directory(client.key_directory(), now())
    wallet.on_account_opened(client.open_account(wallet.registration_request(now())), now())
    setup = scrip.MerchantSetup.generate(5411, "DE-BY", now())
    certificate = client.register_merchant(setup.registration())
    shop = scrip.Merchant.open(setup.private_key(), certificate, server.root_key_pem,
                               10_000, "EUR", None, now())
    shop.refresh_directory(client.key_directory(), now())
    return client, wallet, shop, store, key, setup, certificate, server


def entry_points(parts):
    client, wallet, shop, store, key, setup, certificate, server = parts
    t = now()
    root = server.root_key_pem
    # Valid first arguments, so that the second one is the one decoded.
    sync = wallet.sync_request(t)
    statement = wallet.statement_request("EUR", None, 10, t)
    withdrawal = wallet.blind_withdrawal_request([1], "EUR", t)
    identified = wallet.identified_withdrawal_request([1], "EUR", t)
    refund = shop.refund_request(scrip.new_id(), 1, None, t).request
    registration = scrip.Wallet.create(root, key, Keep()).registration_request(t)
    return {
        "on_sync_report(report)": lambda b: wallet.on_sync_report(sync, b, t),
        "verify_statement(statement)": lambda b: wallet.verify_statement(statement, b, t),
        "on_blind_withdrawal(response)": lambda b: wallet.on_blind_withdrawal(withdrawal, b, t),
        "on_identified_withdrawal(response)": lambda b: wallet.on_identified_withdrawal(identified, b, t),
        "verify_refund_receipt(receipt)": lambda b: shop.verify_refund_receipt(refund, b, t),
        "enroll_device(approval)": lambda b: client.enroll_device(registration, b),
        "certificate_request(currency)": lambda b: wallet.certificate_request(b.decode("latin-1"), 10, t),
        "blind_withdrawal_request(currency)": lambda b: wallet.blind_withdrawal_request([1], b.decode("latin-1"), t),
        "identified_withdrawal_request(currency)": lambda b: wallet.identified_withdrawal_request([1], b.decode("latin-1"), t),
        "Merchant.open(currency)": lambda b: scrip.Merchant.open(setup.private_key(), certificate, root, 1, b.decode("latin-1"), None, t),
        "Wallet.restore": lambda b: scrip.Wallet.restore(b, key, Keep()),
        "Wallet.restore(key)": lambda b: scrip.Wallet.restore(store.sealed, b, Keep()),
        "Wallet.create(root)": lambda b: scrip.Wallet.create(b.decode("latin-1"), key, Keep()),
        "Wallet.create(key)": lambda b: scrip.Wallet.create(root, b, Keep()),
        "update_directory": lambda b: wallet.update_directory(b, t),
        "on_account_opened": lambda b: wallet.on_account_opened(b, t),
        "on_deposit_record": lambda b: wallet.on_deposit_record(b, t),
        "on_certificate_answer": lambda b: wallet.on_certificate_answer(b, t),
        "on_sync_report": lambda b: wallet.on_sync_report(b, b, t),
        "on_blind_withdrawal": lambda b: wallet.on_blind_withdrawal(b, b, t),
        "check_offer": lambda b: wallet.check_offer(b, t),
        "pay(record)": lambda b: wallet.pay(b, scrip.PayMethod.RECORD, t),
        "pay(coins)": lambda b: wallet.pay(b, scrip.PayMethod.COINS, t),
        "on_merchant_reply": lambda b: wallet.on_merchant_reply(b, t),
        "deposit_request(currency)": lambda b: wallet.deposit_request(1, b.decode("latin-1"), t),
        "balance(currency)": lambda b: wallet.balance(b.decode("latin-1"), t),
        "merchant_setup(region)": lambda b: scrip.MerchantSetup.generate(5411, b.decode("latin-1"), t),
        "Merchant.open(key)": lambda b: scrip.Merchant.open(b, certificate, root, 1, "EUR", None, t),
        "Merchant.open(certificate)": lambda b: scrip.Merchant.open(setup.private_key(), b, root, 1, "EUR", None, t),
        "Merchant.open(root)": lambda b: scrip.Merchant.open(setup.private_key(), certificate, b.decode("latin-1"), 1, "EUR", None, t),
        "refresh_directory": lambda b: shop.refresh_directory(b, t),
        "refresh_revocations": lambda b: shop.refresh_revocations(b, t),
        "accept": lambda b: shop.accept(b, t),
        "apply_report": lambda b: shop.apply_report(b, b, t),
        "IssuerHttp(url)": lambda b: scrip.IssuerHttp(b.decode("latin-1"), None).key_directory(),
        "open_account": lambda b: client.open_account(b),
        "register_merchant": lambda b: client.register_merchant(b),
        "deposit": lambda b: client.deposit(b),
        "confirm_deposit": lambda b: client.confirm_deposit(b),
        "balance_certificate": lambda b: client.balance_certificate(b),
        "sync": lambda b: client.sync(b),
        "withdraw_blind": lambda b: client.withdraw_blind(b),
        "redeem": lambda b: client.redeem(b),
        "resign_deposit_request": lambda b: wallet.resign_deposit_request(b, t),
        "update_revocations": lambda b: wallet.update_revocations(b, t),
        "set_revocation_state": lambda b: wallet.set_revocation_state(b),
        "on_identified_withdrawal": lambda b: wallet.on_identified_withdrawal(b, b, t),
        "take_back_unanswered_coins": lambda b: wallet.take_back_unanswered_coins(b.decode("latin-1")),
        "voucher_withdrawal_request": lambda b: wallet.voucher_withdrawal_request(b, t),
        "on_voucher_withdrawal": lambda b: wallet.on_voucher_withdrawal(b, b, t),
        "statement_request(currency)": lambda b: wallet.statement_request(b.decode("latin-1"), None, 10, t),
        "verify_statement": lambda b: wallet.verify_statement(b, b, t),
        "join_request": lambda b: wallet.join_request(b.decode("latin-1"), t),
        "approve_device": lambda b: wallet.approve_device(b, t),
        "on_device_enrolled": lambda b: wallet.on_device_enrolled(b, t),
        "backup_blind_coins(key)": lambda b: wallet.backup_blind_coins(b),
        "restore_blind_coins": lambda b: wallet.restore_blind_coins(b, key, t),
        "refund_request(request id)": lambda b: shop.refund_request(b.decode("latin-1"), 1, None, t),
        "refund_request(refund id)": lambda b: shop.refund_request(scrip.new_id(), 1, b.decode("latin-1"), t),
        "verify_refund_receipt": lambda b: shop.verify_refund_receipt(b, b, t),
        "refund_voucher": lambda b: shop.refund_voucher(b.decode("latin-1"), 1, t),
        "withdraw_identified": lambda b: client.withdraw_identified(b),
        "withdraw_voucher": lambda b: client.withdraw_voucher(b),
        "statement": lambda b: client.statement(b),
        "enroll_device": lambda b: client.enroll_device(b, b),
        "refund": lambda b: client.refund(b),
        "payout(id)": lambda b: client.payout(shop, b.decode("latin-1"), 1, t),
        "swap": lambda b: client.swap(b),
        "device_swap": lambda b: client.device_swap(b),
        "on_swap_receipt": lambda b: wallet.on_swap_receipt(b, b, t),
        "cancel_swap": lambda b: wallet.cancel_swap(b),
        "sign_swap": lambda b: wallet.sign_swap(b, t),
        "swap_hands_in_identified": lambda b: wallet.swap_hands_in_identified(b),
        "change_request(currency)": lambda b: wallet.change_request([1], b.decode("latin-1"), t),
        "identified_swap_request(currency)": lambda b: wallet.identified_swap_request(b.decode("latin-1"), t),
    }


def test_garbage_through_every_entry_point_raises_a_typed_error(parts):
    failures = []
    for name, call in entry_points(parts).items():
        for sample in garbage():
            try:
                call(sample)
            except scrip.ScripError:
                continue
            except Exception as other:  # an untyped error (or a caught Rust panic)
                failures.append(f"{name}({sample[:16]!r}): {type(other).__name__}: {other}")
            else:
                failures.append(f"{name}({sample[:16]!r}) accepted garbage")
    assert failures == []
    # The wallet and the shop still work afterwards.
    client, wallet, shop, *_ = parts
    assert wallet.balance("EUR", now()).coins_minor == 0
    assert shop.unsettled_minor() == 0


def test_a_valid_message_of_another_type_is_refused_as_wrong_type(parts):
    client, wallet, shop, *_ = parts
    offer = shop.offer(5, now())
    with pytest.raises(scrip.ScripError.Invalid) as e:
        wallet.on_merchant_reply(offer, now())
    assert e.value.code == "wrong_type"
    with pytest.raises(scrip.ScripError.Invalid) as e:
        shop.accept(offer, now())
    assert e.value.code == "wrong_type"


def test_an_unreachable_issuer_is_a_transport_error():
    with pytest.raises(scrip.ScripError.Transport):
        scrip.IssuerHttp("http://127.0.0.1:9", None).key_directory()


def test_versions_are_reported():
    v = scrip.versions()
    assert (v.wire_format, v.sealed_format, v.wallet_state) == (1, 1, 3)
    assert v.sdk
    assert "bad_signature" in scrip.reason_codes()


def test_a_state_of_another_format_version_is_refused_clearly(parts):
    _, _, _, store, key, *_ = parts
    sealed = bytearray(store.sealed)
    sealed[8:10] = (2).to_bytes(2, "little")  # the format version in the sealed header
    with pytest.raises(scrip.ScripError.UnsupportedStateVersion) as e:
        scrip.Wallet.restore(bytes(sealed), key, Keep())
    assert (e.value.found, e.value.supported) == (2, 1)
    with pytest.raises(scrip.ScripError.WrongKeyOrCorrupted):
        scrip.Wallet.restore(store.sealed, bytes(32), Keep())


def test_a_state_of_the_previous_state_version_opens_and_is_migrated():
    # Sealed in state version 1 (before refund vouchers) with the key 0x5c * 32: the
    # wallet crate's own fixture (wallet/tests/fixtures/wallet-v1.txt says what it held).
    sealed = (FIXTURES / "wallet-state-format1.bin").read_bytes()
    store = Keep()
    wallet = scrip.Wallet.restore(sealed, b"\x5c" * 32, store)
    assert wallet.account_id() == "51ebb154-dcf2-4a43-9d3c-66c0d0b5bb7f"
    assert wallet.balance("EUR", now()).coins_minor == 30
    # Opening writes nothing: the old bytes stay as they were until the next change.
    assert store.sealed is None


def test_a_state_sealed_by_an_earlier_build_opens():
    # Sealed by the first release of this SDK (format version 1): a registered wallet
    # holding no coins, with `fixtures/wallet-state-v1.key` as its storage key.
    sealed = (FIXTURES / "wallet-state-v1.bin").read_bytes()
    key = bytes.fromhex((FIXTURES / "wallet-state-v1.key").read_text().strip())
    wallet = scrip.Wallet.restore(sealed, key, Keep())
    assert wallet.account_id() == (FIXTURES / "wallet-state-v1.account").read_text().strip()
    assert wallet.balance("EUR", now()).coins_minor == 0
