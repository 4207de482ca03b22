"""Session-state keys, in one place: every widget has a key, and tests find widgets by it."""

CANVAS = "canvas"
CANVAS_MEMORY = "canvas_memory"  # the last drawing, so Draw -> MNIST -> Draw keeps it
CANVAS_UNDO = "canvas_undo"
CANVAS_CLEAR = "canvas_clear"
STROKE_WIDTH = "stroke_width"
INPUT_SOURCE = "input_source"
SAMPLE_MODE = "sample_mode"
SAMPLE_DIGIT = "sample_digit"
SAMPLE_INDEX = "sample_index"
SAMPLE_NEXT = "sample_next"
SAMPLE_PICKED_FOR = "sample_picked_for"  # (mode, digit, model) the current sample was picked for
UPLOAD = "upload"
UPLOAD_DECODED = "upload_decoded"  # (upload identity, ModelInput, preview PNG): an upload is decoded once
UPLOAD_AWAY = "upload_away"  # the Explore tab was closed: its uploader comes back empty, the upload is kept
GALLERY_SHOWN = "gallery_shown"
GALLERY_OPEN = "gallery_open"
GALLERY_PICK = "gallery_pick_"  # + test image index
GALLERY_MORE = "gallery_more"
GALLERY_PAGE = "gallery_page"
GALLERY_CHECK = "gallery_check"
GALLERY_MORE_CHECK = "gallery_more_check"

CHECKPOINT_CHOICE = "checkpoint_choice"
VIEWER = "viewer"  # a token for this session in the server-wide list of runs shown (say if one vanishes)
CHECKPOINT_UPLOAD = "checkpoint_upload"
ROUTING_ITERS = "routing_iters"
DEVICE = "device"

ROUTING_ITERATION = "routing_iteration"
ROUTING_DIGIT = "routing_digit"
ROUTING_VIEW = "routing_view"
ROUTING_XRAY = "routing_xray"  # (model, input) -> capsviz.analysis.xray.RoutingXray of every iteration, computed once
ROUTING_TILES = "coupling_tiles"  # the coupling tiles element (capsviz.ui.tiles): a click picks the inspected capsule
ROUTING_OVERLAY = "fig_overlay"  # the split overlay: a click picks that position (same capsule type)
ROUTING_EXPORT = "routing_export"
INSPECT_CAPSULE = "inspect_capsule"  # the primary capsule index shown in the inspector, or None
POSE_CLASS = "pose_class"
POSE_DIM = "pose_dim_{}"  # .format(d) for d in 0..15
POSE_RESET = "pose_reset"
POSE_NONCE = "pose_nonce"  # bumped by Reset, so the live sliders reset even when the offsets were already 0
POSE_SERVER_OPEN = "pose_server_open"
POSE_LABELS = "pose_labels"  # (input, digit) -> the measured per-dimension labels
LIVE_DECODER = "live_decoder"
LIVE_KEPT = "live_kept"  # the last offsets the page reported, already applied
LIVE_SENT = "live_sent"  # the model whose decoder weights this page has been sent
VIEW_ID = "view_id"  # which (model, input, routing iterations) the per-input widgets belong to
POSE_GRID = "pose_grid"  # (input, model, digit) -> the Figure 4 PNG, computed once
POSE_GRID_OPEN = "pose_grid_open"
ROUTING_MATRIX_OPEN = "routing_matrix_open"
CARD_CURVE_OPEN = "card_curve_open"
POSE_SECONDS = "pose_seconds"  # how long the pose fragment's last run took, server side

TRAIN_EPOCHS = "train_epochs"
TRAIN_BATCH = "train_batch"
TRAIN_LR = "train_lr"
TRAIN_ITERS = "train_iters"
TRAIN_DEVICE = "train_device"
TRAIN_LIMIT = "train_limit"
TRAIN_EVAL_LIMIT = "train_eval_limit"
TRAIN_PRESET = "train_preset"
TRAIN_USE_ANYWAY = "train_use_anyway"
TRAIN_START = "train_start"
TRAIN_CANCEL = "train_cancel"
TRAIN_JOB = "train_job"
TRAIN_USE = "train_use"
TRAIN_DOWNLOAD = "train_download"

SHARE_RESTORED = "share_restored"  # the link's state was applied, once per session
SHARE_DIGIT = "share_digit"  # the link's digit, applied after the first sync
SHARE_IMAGE = "share_image"  # a (1, 28, 28) input from the link, until discarded
SHARE_DISCARD = "share_discard"
GUIDE_STAGE = "guide_stage"

TABS = "tabs"  # the open tab's label (lazy tabs: only the open tab's code runs)
LAB_INPUT = "lab_input"  # the Explore tab's last ModelInput, which the Claims lab transforms
LAB_PARAM = "lab_{}"  # .format(name) for each capsviz.analysis.lab.Transform field: the lab's sliders
LAB_RESET = "lab_reset"
LAB_SWEEP_OF = "lab_sweep_of"
LAB_DIGIT = "lab_digit"
LAB_DIGIT_FOR = "lab_digit_for"  # the input the digit chooser was last set for
LAB_SWEEP = "lab_sweep"  # (what it was computed for, capsviz.analysis.lab.Reading): the sweep, once per setting
LAB_SECONDS = "lab_seconds"  # how long the lab fragment's last run took, server side

# A widget's state is dropped on a run that does not draw it: a closed tab's widgets keep theirs by these lists
# (capsviz.ui.app adds the POSE_DIM sliders, the lab its own).
EXPLORE_KEPT = (
    INPUT_SOURCE,
    SAMPLE_MODE,
    SAMPLE_DIGIT,
    STROKE_WIDTH,
    ROUTING_ITERS,
    ROUTING_ITERATION,
    ROUTING_DIGIT,
    ROUTING_VIEW,
    POSE_CLASS,
    GUIDE_STAGE,
)
TRAIN_KEPT = (
    TRAIN_PRESET,
    TRAIN_EPOCHS,
    TRAIN_BATCH,
    TRAIN_LR,
    TRAIN_ITERS,
    TRAIN_DEVICE,
    TRAIN_LIMIT,
    TRAIN_EVAL_LIMIT,
    TRAIN_USE_ANYWAY,
)
