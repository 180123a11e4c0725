"""Settings: the seeds' variable names, one message naming everything missing, Secret blocks."""

from __future__ import annotations

import pytest

from shared.redact import registered_secrets
from shared.settings import (
    ActiveCampaignSettings,
    BrevoSettings,
    MagentoSettings,
    MailchimpSettings,
    MailerLiteSettings,
    MissingConfiguration,
    Settings,
    load_provider_settings,
)


async def test_missing_variables_are_all_named_in_one_error() -> None:
    with pytest.raises(MissingConfiguration) as caught:
        await load_provider_settings(MailerLiteSettings)
    assert caught.value.variables == ["MAILER_LITE_API_KEY", "MAILER_LITE_GROUP_ID"]
    assert "MAILER_LITE_API_KEY, MAILER_LITE_GROUP_ID" in str(caught.value)


async def test_the_seed_variable_names_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILER_LITE_API_KEY", "ml-key-abcdef")
    monkeypatch.setenv("MAILER_LITE_GROUP_ID", "123456")
    monkeypatch.setenv("BREVO_API_KEY", "xkeysib-abcdef")
    monkeypatch.setenv("BREVO_LIST_ID", "7")
    monkeypatch.setenv("AC_API_URL", "https://acme.api-us1.com/api/3")
    monkeypatch.setenv("AC_API_KEY", "ac-key-abcdef")
    monkeypatch.setenv("MAILCHIMP_CLIENT_ID", "client-1")
    monkeypatch.setenv("MAILCHIMP_CLIENT_SECRET", "mc-secret-abcdef")
    monkeypatch.setenv("REDIRECT_URI", "https://app.example.com/oauth/callback")
    monkeypatch.setenv("MAILCHIMP_TOKEN_KEYS", "mc-keys-abcdef")
    monkeypatch.setenv("MAGENTO_BASE_URL", "https://shop.example.com")
    monkeypatch.setenv("MAGENTO_ACCESS_TOKEN", "mg-token-abcdef")

    mailerlite = await load_provider_settings(MailerLiteSettings)
    brevo = await load_provider_settings(BrevoSettings)
    activecampaign = await load_provider_settings(ActiveCampaignSettings)
    mailchimp = await load_provider_settings(MailchimpSettings)
    magento = await load_provider_settings(MagentoSettings)

    assert mailerlite.group_id == "123456"
    assert brevo.list_id == 7
    assert activecampaign.base_url == "https://acme.api-us1.com/api/3"
    assert mailchimp.redirect_uri == "https://app.example.com/oauth/callback"
    assert magento.api_key is not None
    assert magento.api_key.get_secret_value() == "mg-token-abcdef"
    assert "mg-token-abcdef" not in repr(magento)  # SecretStr hides it
    assert {
        "ml-key-abcdef",
        "xkeysib-abcdef",
        "ac-key-abcdef",
        "mc-secret-abcdef",
        "mc-keys-abcdef",
        "mg-token-abcdef",
    } <= registered_secrets()


def test_base_url_and_limits_are_overridable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BREVO_BASE_URL", "http://127.0.0.1:9999/v3")
    monkeypatch.setenv("BREVO_RATE_PER_SECOND", "20")
    brevo = BrevoSettings()
    assert (brevo.base_url, brevo.rate_per_second) == ("http://127.0.0.1:9999/v3", 20.0)


def test_limits_are_coordinated_only_with_a_prefect_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from shared import settings as settings_module

    monkeypatch.setattr(settings_module, "_profile_api_url", lambda: None)  # ephemeral mode
    assert not Settings(prefect_api_url=None).coordinate_limits
    assert Settings(prefect_api_url="http://127.0.0.1:4200/api").coordinate_limits
    assert not Settings(prefect_api_url="http://x/api", global_limits="off").coordinate_limits
    assert Settings(prefect_api_url=None, global_limits="on").coordinate_limits
    monkeypatch.setattr(settings_module, "_profile_api_url", lambda: "http://profile:4200/api")
    assert Settings(prefect_api_url=None).coordinate_limits


@pytest.mark.usefixtures("prefect_harness")
async def test_secret_comes_from_a_prefect_block_when_the_env_has_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect.blocks.system import Secret

    await Secret(value="block-held-key-98765").save("mailerlite-api-key", overwrite=True)
    monkeypatch.setenv("MAILER_LITE_API_KEY_BLOCK", "mailerlite-api-key")
    monkeypatch.setenv("MAILER_LITE_GROUP_ID", "42")
    settings = await load_provider_settings(MailerLiteSettings)
    assert settings.api_key is not None
    assert settings.api_key.get_secret_value() == "block-held-key-98765"
    assert "block-held-key-98765" in registered_secrets()


@pytest.mark.usefixtures("prefect_harness")
async def test_a_missing_secret_block_is_named_with_the_other_gaps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MAILER_LITE_API_KEY_BLOCK", "no-such-block")
    with pytest.raises(MissingConfiguration) as caught:
        await load_provider_settings(MailerLiteSettings)
    assert caught.value.variables == [
        "MAILER_LITE_GROUP_ID",
        "MAILER_LITE_API_KEY (Secret block 'no-such-block' not found)",
    ]
