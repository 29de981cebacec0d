"""Plain-text tables of the data audit, printed from its summary dict."""
from __future__ import annotations


def print_duplicates(summary: dict) -> None:
    print(f"\n{summary['dataset']}: {summary['files']} files, {summary['unreadable']} unreadable; "
          f"threshold r >= {summary['threshold']}")
    print(f"{'split':<6} {'class':<11} {'files':>6} {'distinct':>9} {'redundant':>10} {'byte copies':>12}")
    for split, row in summary["splits"].items():
        for cls, c in row.items():
            print(f"{split:<6} {cls:<11} {c['files']:>6} {c['distinct']:>9} {c['redundant']:>10} "
                  f"{c['byte_copies']:>12}")
    print(f"groups: {summary['groups']} ({summary['groups_with_copies']} with more than one file); "
          f"candidate pairs: {summary['candidate_pairs']:,}, "
          f"at or above threshold: {summary['pairs_at_or_above_threshold']:,}")
    c = summary["candidate_recall"]
    if c:
        print(f"every pair compared: {c['pairs_at_or_above_threshold']:,} at or above threshold, "
              f"hash candidates found {c['found_by_hash_candidates']:,} (recall {c['recall']}); "
              f"with every pair: {c['groups_if_all_pairs_compared']} groups"
              + (", Testing with a copy in Training "
                 f"{c['test_with_copy_in_train_if_all_pairs_compared']}"
                 if summary["cross_split"] else ""))
    look = summary["second_look"]
    if look and any(b["pairs"] for b in look["bins"]):
        print(f"second look at greyscale pairs, {look['size']} px (same picture if r >= "
              f"{look['copy_if_r_at_size_at_least']}): r bin: pairs / same picture")
        print("  " + ", ".join(f"{b['r_from']:.2f}: {b['pairs']}/{b['same_picture_at_128px']}"
                               for b in look["bins"]))
        print(f"  above threshold but different at {look['size']} px: "
              f"{look['above_threshold_but_different_at_128px']}; below threshold but the same: "
              f"{look['below_threshold_but_same_at_128px']}")
    x = summary["cross_split"]
    if x:
        print(f"groups crossing Training/Testing: {x['groups_crossing']}; Testing images with a copy "
              f"in Training: {x['test_with_copy_in_train']} of {x['test_files']} ("
              + ", ".join(f"{c} {v['with_copy_in_train']}/{v['test_files']}"
                          for c, v in x["per_class"].items()) + ")")
    print(f"groups with different labels: {len(summary['mixed_label_groups'])}")
    for g in summary["mixed_label_groups"]:
        print(f"  group {g['group']}: " + "; ".join(f"{m['path']}" for m in g["members"]))


def print_against(a: dict) -> None:
    print(f"\ncopies of {a['other']} ({a['other_files']} files): {a['with_copy']} of "
          f"{a['files']} files (every pair compared, direct copies: "
          f"{a['with_direct_copy_all_pairs_compared']}); same label {a['same_label']}; "
          f"copy found in split(s) {a['copy_in_split']}")
    for c, v in a["per_class"].items():
        print(f"  {c:<11} {v.get('with_copy', 0):>5} / {v['files']:<5} same label "
              f"{v.get('same_label', 0)}")
    if a["without_copy_count"]:
        print(f"  without a copy ({a['without_copy_count']}): {', '.join(a['without_copy'][:10])}")
    if a["label_differs_count"]:
        print(f"  copy has another label ({a['label_differs_count']}): "
              + ", ".join(f"{d['path']} -> {'/'.join(d['copy_classes'])}"
                          for d in a["label_differs"][:10]))


def print_shortcuts(s: dict) -> None:
    print("\nfile properties per class (mode, format, distinct sizes, most common size, median KiB):")
    for c, v in s["per_class"].items():
        print(f"  {c:<11} {v['mode']} {v['format']} {v['distinct_sizes']} sizes, "
              f"top {v['top_sizes'][0][0]} x{v['top_sizes'][0][1]}, {v['median_kib']} KiB")
    if s["extension_mismatch"]:
        print(f"  content format differs from extension: {len(s['extension_mismatch'])} "
              f"({', '.join(s['extension_mismatch'][:5])})")
    clf = s["classifiers"]
    if isinstance(clf, str):
        print(f"trivial classifiers: {clf}")
        return
    names = list(clf["n"])
    print(f"accuracy / balanced accuracy without anatomy (fit on {s['fit_on']}):")
    print(f"  {'':<44}" + "".join(f"{n + ' (' + str(clf['n'][n]) + ')':>24}" for n in names))
    for model, acc in clf["accuracy"].items():
        bal = clf["balanced_accuracy"][model]
        print(f"  {model:<44}" + "".join(f"{acc.get(n, float('nan')):>15.3f} / "
                                         f"{bal.get(n, float('nan')):.3f}" for n in names))
    print("  classes: " + "; ".join(f"{n}: {c}" for n, c in clf["class_counts"].items()))
