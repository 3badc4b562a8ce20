"""The one identity of an address: `address_key` makes it, for callers, the mirror and live lookups alike.

Two spellings of one mailbox must be one key, or a person Marketo holds as unsubscribed is allowed when a
rep spells them differently. The key is:

- trimmed;
- the local part kept as written (no dots or `+tags` dropped: those are different mailboxes to Marketo),
  in Unicode NFC, lowercased. Marketo matches addresses without regard to case, character by character,
  so `str.lower()` is the fold that matches it; `str.casefold()` would also merge `straße` with `strasse`,
  which Marketo holds as two people;
- the domain lowercased and mapped by IDNA (UTS #46) to its Unicode form (U-labels): `xn--bcher-kva.example`
  and `BÜCHER.example` are both `bücher.example`. Unicode rather than ASCII because that is the form
  `email_validator` gives callers' addresses, so answers, `deliver_to` and the blocked-send log keep showing
  the address as the rep wrote it, and a person reading the log reads `bücher`, not `xn--bcher-kva`. (An
  internationalized local part makes the key non-ASCII anyway, so the ASCII form would buy no ASCII-only keys.)
  A domain IDNA cannot map (an invalid A-label) is kept lowercased, so it still matches itself.

Marketo itself does not normalize: it may hold a person as `user@xn--bcher-kva.example` or as a decomposed
(NFD) `renée`. `marketo_spellings` lists every spelling of a key Marketo may hold, for live lookups.

Both are pure functions of their string, cheap on the common (ASCII) path, and safe to memoize.
"""
from __future__ import annotations

import unicodedata

import idna

ACE_PREFIX = "xn--"  # an IDNA A-label: the ASCII form of a Unicode label


def address_key(value: object) -> str | None:
    """`' User@XN--BCHER-KVA.example '` -> `'user@bücher.example'`; None when it has no `local@domain`.

    It does not validate (callers' addresses are validated by their schemas first); it only makes one key of
    every spelling of the same address. `address_key(address_key(x)) == address_key(x)`.
    """
    if not isinstance(value, str):
        return None
    text = value.strip()
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain:
        return None
    if text.isascii():
        lowered = text.lower()
        if ACE_PREFIX not in lowered.rpartition("@")[2]:
            return lowered  # the common case: nothing to compose, no IDNA label
        local, _, domain = lowered.rpartition("@")
    return f"{_nfc(_nfc(local).lower())}@{canonical_domain(domain)}"


def canonical_domain(domain: str) -> str:
    """A domain in the key's form: lowercased, IDNA-mapped to U-labels; as lowercased when IDNA refuses it."""
    lowered = _nfc(domain).lower()
    if lowered.isascii() and ACE_PREFIX not in lowered:
        return lowered
    try:
        return idna.decode(idna.uts46_remap(lowered, std3_rules=False, transitional=False))
    except (idna.IDNAError, UnicodeError, ValueError):
        return lowered


def marketo_spellings(key: str) -> tuple[str, ...]:
    """Every spelling of this key Marketo may hold, the key first: the domain as U-labels and as A-labels,
    the local part composed (NFC) and decomposed (NFD). One spelling for a plain ASCII address."""
    local, at, domain = key.rpartition("@")
    if not at or key.isascii():
        return (key,)
    locals_ = dict.fromkeys((local, unicodedata.normalize("NFD", local)))
    domains = dict.fromkeys((domain, _ascii_domain(domain)))
    return tuple(dict.fromkeys(f"{part}@{host}" for part in locals_ for host in domains if host))


def _ascii_domain(domain: str) -> str | None:
    if domain.isascii():
        return domain
    try:
        return idna.encode(domain, uts46=True, std3_rules=False, transitional=False).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError):
        return None


def _nfc(text: str) -> str:
    return text if unicodedata.is_normalized("NFC", text) else unicodedata.normalize("NFC", text)
