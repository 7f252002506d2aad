"""Bounds every model meets, for tests of pipeline wiring (not of model quality).

Imported by the tests that run the whole pipeline on tiny data (pytest puts
tests/ on sys.path): one copy, so a change to the thresholds schema is made once.
"""

LENIENT = dict(decision_threshold=0.3, min_group_size=1, min_balanced_accuracy=0.0, min_auc=0.0,
               max_one_class_fpr=1.0, min_one_class_tpr=0.0,
               # A tiny group's FPR or TPR ratio can be infinite (x/0): not judged here.
               not_measurable=['disparate_impact_real', 'disparate_impact_fake'],
               disparate_impact_range=[0.0, 1.0e9], max_abs_average_odds_difference=1.0,
               max_fpr_gap=1.0, max_fnr_gap=1.0,
               max_interval_span_di=0.0, max_interval_span_difference=0.0,  # no span limit
               judge_each_value_of=[])  # tiny race x gender groups could make DI infinite
