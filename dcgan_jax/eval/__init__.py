"""Sample-quality evaluation: feature networks and the metrics computed on their features.

* `classifier`: our small per-dataset classifier (labelled 28x28 data), `metrics`: FID, KID, coverage,
  precision/recall, `evaluation`: the evaluator the trainer calls with them.
* `inception`: a Flax port of the InceptionV3 variant that pytorch-fid uses for paper-comparable FID and KID
  (pool3 features, 2048-d), its weight loading and conversion, and batched feature extraction; `scores`: image sets
  (.npy, folders, run workdirs), the protocol lines, and the Inception evaluator of training runs.
"""
