"""Session-state keys, in one place: every widget has a key, and tests find widgets by it."""

CANVAS = "canvas"
STROKE_WIDTH = "stroke_width"
INPUT_SOURCE = "input_source"
SAMPLE_MODE = "sample_mode"
SAMPLE_DIGIT = "sample_digit"
SAMPLE_INDEX = "sample_index"
SAMPLE_NEXT = "sample_next"
SAMPLE_PICKED_FOR = "sample_picked_for"  # (mode, digit, model) the current sample was picked for
UPLOAD = "upload"
UPLOAD_DECODED = "upload_decoded"  # (upload identity, ModelInput): an upload is decoded once

CHECKPOINT_CHOICE = "checkpoint_choice"
CHECKPOINT_UPLOAD = "checkpoint_upload"
ROUTING_ITERS = "routing_iters"
DEVICE = "device"

ROUTING_ITERATION = "routing_iteration"
ROUTING_DIGIT = "routing_digit"
ROUTING_VIEW = "routing_view"
ROUTING_XRAY = "routing_xray"  # (model, input) -> capsviz.xray.RoutingXray of every iteration, computed once
ROUTING_TILES = "fig_tiles"  # the coupling tiles chart: its click selection picks the inspected capsule
ROUTING_OVERLAY = "fig_overlay"  # the split overlay: a click picks that position (same capsule type)
ROUTING_EXPORT = "routing_export"
INSPECT_CAPSULE = "inspect_capsule"  # the primary capsule index shown in the inspector, or None
POSE_CLASS = "pose_class"
POSE_DIM = "pose_dim_{}"  # .format(d) for d in 0..15
POSE_RESET = "pose_reset"
POSE_INPUT_ID = "pose_input_id"  # which input the sliders belong to
POSE_GRID = "pose_grid"  # (input, model, digit) -> the Figure 4 PNG, computed once
POSE_SECONDS = "pose_seconds"  # how long the pose fragment's last run took, server side

TRAIN_EPOCHS = "train_epochs"
TRAIN_BATCH = "train_batch"
TRAIN_LR = "train_lr"
TRAIN_ITERS = "train_iters"
TRAIN_DEVICE = "train_device"
TRAIN_LIMIT = "train_limit"
TRAIN_START = "train_start"
TRAIN_CANCEL = "train_cancel"
TRAIN_JOB = "train_job"
TRAIN_USE = "train_use"
