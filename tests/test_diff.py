from conftest import write_run

from lora_audit.diff import change_words, diff_runs
from lora_audit.evidence import load_run


def _by_param(d):
    return {c.param: c for c in d.changes}


def test_words_a_person_would_use():
    assert change_words("network_dim", 32, 64) == "DOUBLED 32→64"
    assert change_words("network_dim", 16, 64) == "4× 16→64"
    assert change_words("train_batch_size", 4, 2) == "HALVED 4→2"
    assert change_words("mixed_precision", "fp16", "bf16") == "fp16→bf16"
    assert change_words("resolution", "512,512", "1024,1024") == "512×512→1024×1024 (4× pixels)"
    assert change_words("resolution", "512", "768") == "512×512→768×768 (×2.25 pixels)"


def test_diff_of_two_runs(two_runs):
    good, bad = (load_run(p) for p in two_runs)
    d = diff_runs([good, bad])
    c = _by_param(d)
    assert c["network_dim"].kind == "changed" and c["network_dim"].words == "DOUBLED 32→64"
    multires = c["multires_noise_iterations"]
    assert multires.kind == "removed" and multires.words == "REMOVED (was 6)"
    assert c["mixed_precision"].words == "fp16→bf16"
    assert c["max_token_length"].words == "REMOVED (was 225; kohya's default 75)"
    assert "learning_rate" not in c  # 1e-4 == 0.0001
    assert c["resolution"].kind == "changed"  # "1024" means 1024,1024
    # explicit 0.3 vs unset: kohya's default is 0.3 -> nominal, not effective; and inert without iterations
    nd = c["multires_noise_discount"]
    assert nd.nominal and nd.kind == "same" and "bad" in nd.inert
    assert all(x.param != "multires_noise_discount" for x in d.effective_changes())
    assert c["network_dim"].values["good"].origin == "explicit"
    assert c["save_precision"].values["bad"].origin == "default"


def test_derived_quantities_are_diffed_with_how(two_runs):
    d = diff_runs([load_run(p) for p in two_runs])
    der = {c.param: c for c in d.derived}
    assert "lora_scale" not in der or der["lora_scale"].kind == "same"  # 16/32 == 32/64
    assert der["effective_batch"].words == "HALVED 4→2"
    assert der["pixels_per_sample"].words.startswith("4×")
    assert "width × height" in der["pixels_per_sample"].note


def test_all_lists_what_stayed_the_same(two_runs):
    d = diff_runs([load_run(p) for p in two_runs], include_same=True)
    same = {c.param for c in d.changes if c.kind == "same"}
    assert {"noise_offset", "learning_rate", "max_train_epochs"} <= same


def test_unknown_in_a_run(tmp_path):
    good = write_run(tmp_path, "good", "pretrained_model_name_or_path = 'm'\ntrain_data_dir = 'x'\nnetwork_dim = 8\n"
                                       "shuffle_caption = true\n")
    partial = write_run(tmp_path, "partial", "network_dim = 16\n")  # not a whole config: no defaults
    d = diff_runs([load_run(good), load_run(partial)])
    c = _by_param(d)
    assert c["shuffle_caption"].kind == "unknown" and c["shuffle_caption"].words == "unknown in partial"
    assert "gradient_checkpointing" not in c  # a default there, unknown here: nothing to compare


def test_list_params_get_a_structural_diff(tmp_path):
    a = write_run(tmp_path, "a", "optimizer_args = ['weight_decay=0.01', 'betas=0.9,0.99']\n")
    b = write_run(tmp_path, "b", "optimizer_args = ['weight_decay=0.1', 'betas=0.9,0.99']\n")
    c = _by_param(diff_runs([load_run(a), load_run(b)]))
    assert c["optimizer_args"].kind == "changed" and "weight_decay=0.1" in c["optimizer_args"].note
