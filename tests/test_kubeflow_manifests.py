"""Checks the TF Serving Kubernetes manifests (kubeflow/manifests/serving) offline.

Every object is checked field by field against the Kubernetes API models of
the `kubernetes` Python client (generated from the Kubernetes OpenAPI spec), so
a misspelt or misplaced field fails; then the serving-specific invariants. With
`kubectl` on PATH, `kubectl kustomize` builds the folder as a cluster would.
"""

import os
import re
import shutil
import subprocess

import pytest
import yaml
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from fakefaces.pipeline.config import PROJECT_ROOT

MANIFESTS = os.path.join(PROJECT_ROOT, 'kubeflow', 'manifests', 'serving')
SERVING_MODELS_CONFIG = os.path.join(PROJECT_ROOT, 'serving', 'models.config')
MODEL_NAME = 'fakefaces'
CONFIG_FILE_FLAG = '--model_config_file=/models/config/models.config'

# Kubernetes model class of each manifest kind.
KIND_MODELS = {
    ('apps/v1', 'Deployment'): 'V1Deployment',
    ('v1', 'Service'): 'V1Service',
    ('v1', 'PersistentVolumeClaim'): 'V1PersistentVolumeClaim',
    ('v1', 'ConfigMap'): 'V1ConfigMap',
}
_PRIMITIVES = {'str': str, 'int': int, 'bool': bool, 'float': (int, float), 'object': object,
               'datetime': str}


def check_against_model(value, type_name: str, where: str):
  """Raises AssertionError naming the first field of `value` not in model `type_name`."""
  from kubernetes import client  # pylint: disable=g-import-not-at-top
  list_of = re.fullmatch(r'list\[(.+)\]', type_name)
  dict_of = re.fullmatch(r'dict\(str, (.+)\)', type_name)
  if list_of:
    assert isinstance(value, list), f'{where}: expected a list'
    for i, item in enumerate(value):
      check_against_model(item, list_of.group(1), f'{where}[{i}]')
  elif dict_of:
    assert isinstance(value, dict), f'{where}: expected a mapping'
    for key, item in value.items():
      check_against_model(item, dict_of.group(1), f'{where}.{key}')
  elif type_name in _PRIMITIVES:
    assert isinstance(value, _PRIMITIVES[type_name]), f'{where}: expected {type_name}, got {value!r}'
  else:
    model = getattr(client, type_name)
    assert isinstance(value, dict), f'{where}: expected a {type_name} mapping'
    by_json_name = {json_name: attr for attr, json_name in model.attribute_map.items()}
    unknown = sorted(set(value) - set(by_json_name))
    assert not unknown, f'{where}: unknown field(s) {unknown} for {type_name}'
    for key, item in value.items():
      check_against_model(item, model.openapi_types[by_json_name[key]], f'{where}.{key}')


def _load_documents(path):
  with open(path, encoding='utf-8') as f:
    return [doc for doc in yaml.safe_load_all(f) if doc]


@pytest.fixture(scope='module')
def kustomization():
  return _load_documents(os.path.join(MANIFESTS, 'kustomization.yaml'))[0]


@pytest.fixture(scope='module')
def objects(kustomization):
  """{kind: object} of the resources the kustomization lists."""
  found = {}
  for resource in kustomization['resources']:
    for doc in _load_documents(os.path.join(MANIFESTS, resource)):
      found[doc['kind']] = doc
  return found


def _container(objects):
  (container,) = objects['Deployment']['spec']['template']['spec']['containers']
  return container


def test_every_resource_matches_the_kubernetes_api(objects):
  assert set(objects) == {'Deployment', 'Service', 'PersistentVolumeClaim'}
  for kind, obj in objects.items():
    for key in ('apiVersion', 'kind', 'metadata', 'spec'):
      assert key in obj, f'{kind}: missing {key}'
    check_against_model(obj, KIND_MODELS[(obj['apiVersion'], kind)], kind)


def test_the_model_check_catches_a_misspelt_field(objects):
  import copy
  broken = copy.deepcopy(objects['Deployment'])
  container = broken['spec']['template']['spec']['containers'][0]
  container['readinesProbe'] = container.pop('readinessProbe')
  with pytest.raises(AssertionError, match='readinesProbe'):
    check_against_model(broken, 'V1Deployment', 'Deployment')


def test_deployment_runs_official_tf_serving_with_the_model_config(objects):
  container = _container(objects)
  assert container['image'] == 'tensorflow/serving:2.16.1'
  assert CONFIG_FILE_FLAG in container['args']
  assert {'--port=8500', '--rest_api_port=8501'} <= set(container['args'])
  mounts = {m['mountPath']: m['name'] for m in container['volumeMounts']}
  assert mounts['/models/config'] == 'config'
  volumes = {v['name']: v for v in objects['Deployment']['spec']['template']['spec']['volumes']}
  assert volumes['config']['configMap']['name'] == 'fakefaces-serving-config'
  claim = volumes[mounts['/models/fakefaces']]['persistentVolumeClaim']['claimName']
  assert claim == objects['PersistentVolumeClaim']['metadata']['name']
  selector = objects['Deployment']['spec']['selector']['matchLabels']
  assert selector.items() <= objects['Deployment']['spec']['template']['metadata']['labels'].items()


def test_ports_probes_and_resources(objects):
  container = _container(objects)
  ports = {p['name']: p['containerPort'] for p in container['ports']}
  assert ports == {'grpc': 8500, 'http': 8501}
  readiness = container['readinessProbe']['httpGet']
  assert readiness['path'] == f'/v1/models/{MODEL_NAME}'
  assert ports[readiness['port']] == 8501
  assert 'livenessProbe' in container
  for bound in ('requests', 'limits'):
    assert {'cpu', 'memory'} <= set(container['resources'][bound]), bound
  service = objects['Service']['spec']
  assert {(p['port'], p['targetPort']) for p in service['ports']} == {(8500, 'grpc'), (8501, 'http')}
  assert service['selector'] == objects['Deployment']['spec']['selector']['matchLabels']


def test_config_map_file_is_the_serving_models_config(kustomization):
  (generator,) = kustomization['configMapGenerator']
  assert generator['name'] == 'fakefaces-serving-config'
  assert generator['files'] == ['models.config']
  with open(os.path.join(MANIFESTS, 'models.config'), encoding='utf-8') as f:
    manifest_copy = f.read()
  with open(SERVING_MODELS_CONFIG, encoding='utf-8') as f:
    assert manifest_copy == f.read(), (
        'kubeflow/manifests/serving/models.config differs from serving/models.config; '
        'copy the latter over the former')


def test_models_config_is_a_model_server_config_for_the_mounted_volume():
  with open(os.path.join(MANIFESTS, 'models.config'), encoding='utf-8') as f:
    config = text_format.Parse(f.read(), model_server_config_pb2.ModelServerConfig())
  (model,) = config.model_config_list.config
  assert model.name == MODEL_NAME
  assert model.model_platform == 'tensorflow'
  assert model.base_path == f'/models/{MODEL_NAME}'  # where deployment.yaml mounts the models


def test_kustomize_build(objects):
  kubectl = shutil.which('kubectl')
  if not kubectl:
    pytest.skip('kubectl is not installed; `kubectl kustomize` is the offline build check')
  built = subprocess.run([kubectl, 'kustomize', MANIFESTS], capture_output=True, text=True,
                         timeout=60, check=True).stdout
  docs = {doc['kind']: doc for doc in yaml.safe_load_all(built) if doc}
  assert set(docs) == set(objects) | {'ConfigMap'}
  check_against_model(docs['ConfigMap'], 'V1ConfigMap', 'ConfigMap')
  config_map_name = docs['ConfigMap']['metadata']['name']
  assert config_map_name.startswith('fakefaces-serving-config-')  # content hash: rollout on change
  volumes = docs['Deployment']['spec']['template']['spec']['volumes']
  assert {'name': 'config', 'configMap': {'name': config_map_name}} in volumes
  with open(SERVING_MODELS_CONFIG, encoding='utf-8') as f:
    assert docs['ConfigMap']['data']['models.config'] == f.read()
  for obj in docs.values():
    assert obj['metadata']['labels']['app.kubernetes.io/part-of'] == 'fakefaces'
