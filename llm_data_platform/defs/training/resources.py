"""The training side's settings as one resource, built from ``Settings`` by the domain.

Bound to the training assets and checks themselves (``resource_defs``), so the domain brings
its own configuration and the shared ``build_resources`` needs no entry for it.
"""

import dagster as dg

from llm_data_platform.settings import Settings
from llm_data_platform.transforms.prompt_templates import load_template
from llm_data_platform.transforms.target_tokenizer import TargetModel, parse_prices, target_model
from llm_data_platform.transforms.training_examples import TrainingConfig


class TrainingSettings(dg.ConfigurableResource):
    """Selection rules, the target model and its prices, and the fine-tune switch."""

    template: str = "python_docs_assistant@1"
    min_rating: int = 4
    validation_fraction: float = 0.1
    min_quality: float = 0.7
    allow_pii: bool = False
    require_resolved: bool = True
    max_turns: int = 50
    max_examples: int = 10_000  # per weekly batch, best first
    target_model: str = "gpt-4o-mini-2024-07-18"
    target_encoding: str = ""
    max_tokens: int = 0  # 0: the model's context limit
    over_limit: str = "drop"
    prices: str = ""  # model=USD per 1M training tokens,...
    fine_tune: bool = False
    poll_seconds: float = 30.0
    wait_seconds: float = 7200.0
    openai_base_url: str = ""
    openai_api_key: str | None = None

    def model(self) -> TargetModel:
        return target_model(self.target_model, self.target_encoding, self.max_tokens)

    def config(self) -> TrainingConfig:
        """What ``build_training_examples`` applies. "und" (a short "thanks!") does not
        disqualify a conversation that is otherwise English."""
        template = load_template(self.template)
        model = self.model()
        return TrainingConfig(
            system_prompt=template.system,
            template=template.name,
            few_shot=template.few_shot,
            min_rating=self.min_rating,
            validation_fraction=self.validation_fraction,
            allow_undetermined_language=True,
            max_tokens=model.context_tokens,
            over_limit=self.over_limit,
            encoding=model.encoding,
            allow_pii_redacted=self.allow_pii,
            min_quality=self.min_quality,
            require_resolved=self.require_resolved,
            max_turns=self.max_turns,
        )

    def price_per_million(self) -> float | None:
        return parse_prices(self.prices).get(self.target_model)


def training_settings(settings: Settings) -> TrainingSettings:
    return TrainingSettings(
        template=settings.training_template,
        min_rating=settings.min_rating,
        validation_fraction=settings.validation_fraction,
        min_quality=settings.training_min_quality,
        allow_pii=settings.training_allow_pii,
        require_resolved=settings.training_require_resolved,
        max_turns=settings.training_max_turns,
        max_examples=settings.training_max_examples,
        target_model=settings.target_model,
        target_encoding=settings.target_encoding,
        max_tokens=settings.training_max_tokens,
        over_limit=settings.training_over_limit,
        prices=settings.training_prices,
        fine_tune=settings.fine_tune,
        poll_seconds=settings.fine_tune_poll_seconds,
        wait_seconds=settings.fine_tune_wait_seconds,
        openai_base_url=settings.openai_base_url,
        # the key as an EnvVar: run config and the event log hold its name, never its value
        openai_api_key=dg.EnvVar("OPENAI_API_KEY") if settings.openai_api_key_set else None,
    )
