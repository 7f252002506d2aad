"""The ModelCard component's configuration (the `model_card:` section of the pipeline config)."""

import dataclasses
from typing import List


@dataclasses.dataclass
class ModelCardConfig:
  """Who owns the model and what it is for; everything measured comes from the run."""
  name: str = 'fakefaces GAN face detector'  # the card's title
  # What the model does, in the card's overview.
  overview: str = ('Flags GAN-generated ("fake") face photos. Blessed only when accurate and '
                   'fair across the FairFace demographics (after "Fighting Fakes Fairly").')
  owners: List[str] = dataclasses.field(default_factory=list)  # names on the card
  # Said first on the card and on the web page, before any metric: e.g. that the training
  # data was generated (the demo sets it). Empty: nothing is said beyond the data sources.
  training_data_note: str = ''
  # The use case the card states (considerations.use_cases).
  intended_use: str = ('A screening aid for human reviewers of profile photos; never the sole '
                       'basis of a decision about a person.')
