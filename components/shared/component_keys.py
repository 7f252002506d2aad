"""Channel and execution-property keys of the project's components, written once.

A component's spec (`component.py`), its executor (`input_dict[...]`,
`output_dict[...]`, `exec_properties[...]`) and the pipeline
(`component.outputs[...]`) name the same channels; a typo in one of three
string literals only fails when the pipeline runs. This module follows
`tfx/types/standard_component_specs.py`: one constant per key, imported by
all three. Keys whose meaning is the same as a standard TFX key keep its value
(`examples`, `model`, `blessing`, ...), so the specs read like TFX's own.
The TFX components the pipeline wires (Evaluator, Pusher) are addressed with
`tfx.types.standard_component_specs` itself.
"""

# Inputs and outputs (channels).
# FaceExampleGen (output); DataGate, DemographicAnnotator, ServingCanary (inputs).
EXAMPLES_KEY = 'examples'
ANNOTATED_EXAMPLES_KEY = 'annotated_examples'  # DemographicAnnotator (output)
ANNOTATIONS_KEY = 'annotations'  # DemographicAnnotator (output); FairnessGate, ModelCardGen (inputs)
STATISTICS_KEY = 'statistics'  # DataGate
SCHEMA_KEY = 'schema'  # DataGate
ANOMALIES_KEY = 'anomalies'  # DataGate
REPORT_KEY = 'report'  # DataGate, FairnessGate, ServingCanary (outputs)
EVALUATION_KEY = 'evaluation'  # FairnessGate
EVALUATOR_BLESSING_KEY = 'evaluator_blessing'  # FairnessGate
MODEL_KEY = 'model'  # FairnessGate, ServingCanary, ModelCardGen
BASELINE_MODEL_KEY = 'baseline_model'  # FairnessGate: the model in production (optional)
BLESSING_KEY = 'blessing'  # FairnessGate, ServingCanary (outputs)
MODEL_BLESSING_KEY = 'model_blessing'  # ServingCanary: the FairnessGate's blessing
FAIRNESS_REPORT_KEY = 'fairness_report'  # ModelCardGen
CANARY_REPORT_KEY = 'canary_report'  # ModelCardGen
PUSHED_MODEL_KEY = 'pushed_model'  # ModelCardGen
INGEST_REPORT_KEY = 'ingest_report'  # FaceExampleGen (output); ModelCardGen (input)
MODEL_CARD_KEY = 'model_card'  # ModelCardGen (output)

# Execution properties: each holds a typed config as JSON (config_base.to_json).
INGEST_CONFIG_KEY = 'ingest_config'  # FaceExampleGen: IngestConfig
VALIDATION_CONFIG_KEY = 'validation_config'  # DataGate: ValidationConfig
THRESHOLDS_KEY = 'thresholds'  # DataGate, FairnessGate: ThresholdsConfig
ANNOTATOR_CONFIG_KEY = 'annotator_config'  # DemographicAnnotator: AnnotatorConfig
CONFIG_KEY = 'config'  # ServingCanary: CanaryConfig; ModelCardGen: ModelCardConfig
# FaceExampleGen: a signature of the input files (paths, sizes, mtimes), so a cached
# ingestion is never served for changed files.
INPUT_FINGERPRINT_KEY = 'input_fingerprint'
