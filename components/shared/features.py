"""The tf.Example contract shared by every component, the trainer and serving.

One place names each feature so that ingestion, the schema, the trainer, the
evaluator slices and the fairness gate cannot drift apart.
"""

import itertools

IMAGE = 'image'  # bytes: encoded JPEG/PNG of the (aligned) face
LABEL = 'label'  # int64: 0 = real photo, 1 = GAN-generated
GENDER = 'gender'  # bytes: one of GENDERS or UNKNOWN
RACE = 'race'  # bytes: one of RACES or UNKNOWN
AGE = 'age'  # bytes: one of AGES or UNKNOWN
SOURCE = 'source'  # bytes: dataset the image came from (e.g. 'fairface')
IMAGE_ID = 'image_id'  # bytes: stable id, unique across sources
FACE_SIZE = 'face_size'  # int64: detected face box side in source pixels, 0 if not detected
# float x128: dlib's face descriptor of the aligned face before the shared
# treatment (face_preparation/descriptors.py); written when ingest.face_descriptors,
# read by the DemographicAnnotator, never by the model.
FACE_DESCRIPTOR = 'face_descriptor'
# float [d]: what the model's frozen image backbone gives its head for the example's
# image (the CLIP embedding [512], or the chosen blocks' class tokens flattened
# [len(blocks) x 768]; serving_contract.BackboneFeatures says which), read from the
# embedding cache. Written only by the Evaluator into its own copy of the split it
# scores (fairness_gate/evaluator_executor.py), read only by the model's
# serving_contract.BACKBONE_EXAMPLES_SIGNATURE; never ingested, not in the schema.
BACKBONE_FEATURES = 'backbone_features'
# Where the example's gender/race/age came from: written by FaceExampleGen as
# 'prompted' for a source whose demographics are a generator's prompt (absent
# otherwise), and by the DemographicAnnotator for every example, with per attribute
# the confidence.
DEMOGRAPHICS_SOURCE = 'demographics_source'  # bytes: one of DEMOGRAPHICS_SOURCES
GENDER_CONFIDENCE = 'gender_confidence'  # float: 1 human or prompted label, P(class) predicted, 0 unknown
RACE_CONFIDENCE = 'race_confidence'
AGE_CONFIDENCE = 'age_confidence'
CONFIDENCE_FEATURES = {'gender': GENDER_CONFIDENCE, 'race': RACE_CONFIDENCE,
                       'age': AGE_CONFIDENCE}

DEMOGRAPHIC_FEATURES = (GENDER, RACE, AGE)
STRING_FEATURES = (GENDER, RACE, AGE, SOURCE, IMAGE_ID)

REAL, FAKE = 0, 1
LABEL_NAMES = {REAL: 'real', FAKE: 'fake'}

UNKNOWN = 'unknown'
# demographics_source: 'human' when any of gender/race/age is a human label
# (dataset CSV, manifest, `fakefaces label`), 'prompted' when they are what a
# generator was asked for (a source with `demographics: prompted`, e.g. SDFD: not a
# person's judgement of the image), else 'predicted' when the annotator filled any
# of them, else 'unknown'. Human and prompted labels are never replaced.
HUMAN, PROMPTED, PREDICTED = 'human', 'prompted', 'predicted'
DEMOGRAPHICS_SOURCES = (HUMAN, PROMPTED, PREDICTED, UNKNOWN)
LABELLED_ORIGINS = (HUMAN, PROMPTED)  # labels given with the data, not predictions
# Which of gender/race/age are labelled (human or prompted), per example: written by
# the DemographicAnnotator, e.g. 'age+gender+race', 'gender+race' or NONE_LABELLED.
# demographics_source cannot say this for one grouping (its any-of rule calls a face
# with a human gender and a predicted race 'human'); the Evaluator slices each
# demographic cross by it so the FairnessGate can judge on labelled faces alone.
LABELLED_ATTRIBUTES = 'labelled_attributes'  # bytes: labelled_attributes_value(...)
NONE_LABELLED = 'none'
ATTRIBUTE_JOIN = '+'


def labelled_attributes_value(sources) -> str:
  """The labelled_attributes of an example from {attribute: human/prompted/predicted/unknown}:
  its labelled attributes in alphabetical order joined by '+', or 'none'."""
  labelled = sorted(a for a, source in sources.items() if source in LABELLED_ORIGINS)
  return ATTRIBUTE_JOIN.join(labelled) or NONE_LABELLED


# Every value labelled_attributes can take (the schema's domain): each subset of
# gender/race/age, then NONE_LABELLED.
LABELLED_ATTRIBUTES_VALUES = tuple(
    ATTRIBUTE_JOIN.join(sorted(subset)) for size in (3, 2, 1)
    for subset in itertools.combinations(DEMOGRAPHIC_FEATURES, size)) + (NONE_LABELLED,)


def labelled_covers(value: str, names) -> bool:
  """Whether a labelled_attributes value says every one of `names` is labelled."""
  labelled = set() if value == NONE_LABELLED else set(value.split(ATTRIBUTE_JOIN))
  return set(names) <= labelled
# FairFace vocabularies, spelled exactly as in fairface_label_{train,val}.csv.
GENDERS = ('Male', 'Female')
RACES = ('White', 'Black', 'East Asian', 'Southeast Asian', 'Indian',
         'Middle Eastern', 'Latino_Hispanic')
AGES = ('0-2', '3-9', '10-19', '20-29', '30-39', '40-49', '50-59', '60-69',
        'more than 70')
VOCABULARIES = {GENDER: GENDERS, RACE: RACES, AGE: AGES}

# Example splits written by ingestion: train fits the weights, eval drives
# early stopping, test is held out for the Evaluator and the fairness gate.
TRAIN, EVAL, TEST = 'train', 'eval', 'test'
SPLITS = (TRAIN, EVAL, TEST)
