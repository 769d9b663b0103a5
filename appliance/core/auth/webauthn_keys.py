"""WebAuthn security keys (passkeys) as a second factor (docs/accounts.md).

Every ceremony check - origin, RP id hash, challenge, flags, attestation,
COSE key, signature, sign count - is py_webauthn's; this module keeps the
credentials, builds the options and decides whose key a credential is.
"""
from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass

import peewee as pw
import webauthn
from webauthn.helpers import bytes_to_base64url
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import AuthenticatorSelectionCriteria as Selection
from webauthn.helpers.structs import (
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from appliance.core.db import BaseModel, User, database, new_public_id, now, register
from appliance.errors import Conflict, Invalid, Unauthenticated

RP_NAME = "appliance"
MAX_KEYS = 20
DEFAULT_NAME = "Security key"


class WebAuthnCredential(BaseModel):
    id = pw.CharField(primary_key=True, max_length=16)
    user = pw.ForeignKeyField(User, backref="webauthn_credentials", on_delete="CASCADE")
    # base64url; the specification allows up to 1023 bytes
    credential_id = pw.CharField(max_length=1400, unique=True)
    public_key = pw.TextField()   # the COSE key, base64url
    sign_count = pw.BigIntegerField(default=0)
    transports = pw.CharField(max_length=128, default="")   # comma-separated, as the browser said
    name = pw.CharField(max_length=64)
    authenticator_type = pw.CharField(max_length=16, default="")
    created_at = pw.BigIntegerField(default=now)
    last_used_at = pw.BigIntegerField(null=True)

    class Meta:
        table_name = "webauthn_credential"


register(WebAuthnCredential)


@dataclass(frozen=True)
class RelyingParty:
    id: str
    origins: tuple[str, ...]

    @classmethod
    def from_config(cls, config) -> RelyingParty:
        """``webauthn_rp_id`` or the public host name (an IP address is no valid RP id:
        then "localhost"); ``webauthn_origins`` or the pages a browser shows for it."""
        rp_id = config.webauthn_rp_id or config.public_host
        try:
            ipaddress.ip_address(rp_id)
            rp_id = "localhost"
        except ValueError:
            pass
        rp_id = rp_id.lower()
        if config.webauthn_origins.strip():
            return cls(rp_id, tuple(o.strip().rstrip("/") for o in config.webauthn_origins.split(",") if o.strip()))
        scheme = "https" if config.tls_cert_file else "http"
        default = {"http": 80, "https": 443}[scheme]
        port = "" if config.http_port == default else f":{config.http_port}"
        return cls(rp_id, tuple(dict.fromkeys((f"{scheme}://{rp_id}{port}", f"https://{rp_id}"))))


def keys_of(user: User) -> list[WebAuthnCredential]:
    return list(WebAuthnCredential.select().where(WebAuthnCredential.user == user)
                .order_by(WebAuthnCredential.created_at, WebAuthnCredential.id))


def enabled(user: User) -> bool:
    return WebAuthnCredential.select().where(WebAuthnCredential.user == user).exists()


def _descriptors(keys: list[WebAuthnCredential]) -> list[PublicKeyCredentialDescriptor]:
    out = []
    for key in keys:
        transports = [AuthenticatorTransport(t) for t in key.transports.split(",")
                      if t in AuthenticatorTransport._value2member_map_]
        out.append(PublicKeyCredentialDescriptor(id=webauthn.base64url_to_bytes(key.credential_id),
                                                 transports=transports or None))
    return out


def _as_dict(options) -> dict:
    return json.loads(webauthn.options_to_json(options))


def registration_options(rp: RelyingParty, user: User) -> tuple[dict, str]:
    """navigator.credentials.create options (the user's keys excluded) and their challenge."""
    options = webauthn.generate_registration_options(
        rp_id=rp.id, rp_name=RP_NAME, user_name=user.username, user_id=user.public_id.encode(),
        user_display_name=user.display_name, exclude_credentials=_descriptors(keys_of(user)),
        authenticator_selection=Selection(resident_key=ResidentKeyRequirement.DISCOURAGED,
                                          user_verification=UserVerificationRequirement.DISCOURAGED))
    return _as_dict(options), bytes_to_base64url(options.challenge)


def add(rp: RelyingParty, user: User, credential: dict, challenge: str, name: str) -> WebAuthnCredential:
    """Verify a registration response and keep its credential; Invalid if it does not verify."""
    name = name.strip() or DEFAULT_NAME
    if len(name) > 64:
        raise Invalid("name must be 1-64 characters")
    try:
        parsed = webauthn.helpers.parse_registration_credential_json(credential)
        verified = webauthn.verify_registration_response(
            credential=parsed, expected_challenge=webauthn.base64url_to_bytes(challenge),
            expected_rp_id=rp.id, expected_origin=list(rp.origins))
    except (WebAuthnException, ValueError, TypeError, KeyError) as e:
        raise Invalid(f"the key's registration did not verify: {e}") from None
    credential_id = bytes_to_base64url(verified.credential_id)
    if len(credential_id) > WebAuthnCredential.credential_id.max_length:   # over the specification's 1023 bytes
        raise Invalid("the key's credential id is too long")
    with database.atomic():
        if WebAuthnCredential.select().where(WebAuthnCredential.user == user).count() >= MAX_KEYS:
            raise Conflict(f"at most {MAX_KEYS} security keys per user")
        if WebAuthnCredential.select().where(WebAuthnCredential.credential_id == credential_id).exists():
            raise Conflict("this key is registered already")
        attachment = parsed.authenticator_attachment.value if parsed.authenticator_attachment else ""
        return WebAuthnCredential.create(
            id="key_" + new_public_id(12), user=user, credential_id=credential_id,
            public_key=bytes_to_base64url(verified.credential_public_key), sign_count=verified.sign_count,
            transports=",".join(t.value for t in parsed.response.transports or [])[:128],
            name=name, authenticator_type=attachment)


def authentication_options(rp: RelyingParty, user: User) -> tuple[dict, str]:
    """navigator.credentials.get options allowing the user's keys, and their challenge."""
    options = webauthn.generate_authentication_options(
        rp_id=rp.id, allow_credentials=_descriptors(keys_of(user)),
        user_verification=UserVerificationRequirement.DISCOURAGED)
    return _as_dict(options), bytes_to_base64url(options.challenge)


def verify_assertion(rp: RelyingParty, user: User, credential: dict, challenge: str) -> WebAuthnCredential:
    """The user's key that signed this assertion for *challenge*; Unauthenticated
    for another user's key, an unknown one, a bad signature or a sign count that
    did not go up (a cloned key or a replay). The new count is stored with a
    conditional update, so of two uses racing with one count only one wins."""
    credential_id = credential.get("id") if isinstance(credential, dict) else None
    key = WebAuthnCredential.get_or_none((WebAuthnCredential.credential_id == str(credential_id))
                                         & (WebAuthnCredential.user == user))
    if key is None:
        raise Unauthenticated("this security key is not registered to the user")
    try:
        verified = webauthn.verify_authentication_response(
            credential=credential, expected_challenge=webauthn.base64url_to_bytes(challenge),
            expected_rp_id=rp.id, expected_origin=list(rp.origins),
            credential_public_key=webauthn.base64url_to_bytes(key.public_key),
            credential_current_sign_count=key.sign_count)
    except (WebAuthnException, ValueError, TypeError, KeyError) as e:
        raise Unauthenticated(f"the security key's assertion did not verify: {e}") from None
    updated = WebAuthnCredential.update(sign_count=verified.new_sign_count, last_used_at=now()).where(
        (WebAuthnCredential.id == key.id) & (WebAuthnCredential.sign_count == key.sign_count)).execute()
    if not updated:
        raise Unauthenticated("the security key's assertion did not verify: used concurrently")
    return key


def remove_all(user: User) -> int:
    return WebAuthnCredential.delete().where(WebAuthnCredential.user == user).execute()
