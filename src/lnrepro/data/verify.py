"""Checksums of the dataset files the loaders know, checked before a run uses them.

`KNOWN[dataset][name]` maps the accepted content digests of a file, `name` being its path
inside the dataset's folder (`<data_dir>/MNIST/raw/`, `<data_dir>/ptb/`, ...), to a label. A
compressed file (`.gz`, `.xz`) is checked by the digest of its decompressed content, under
its name without that suffix, so that a re-compressed copy verifies too (and a damaged
compressed stream fails to decompress). Files the table does not name are not checked.

A file that differs is one DataError line (exit 2) naming it: damaged, truncated or another
version. A user with a different but legitimate copy passes `data.verify=false` and gets one
warning instead. Digests are computed once per (path, size, mtime) and remembered under
`<cache root>/digests/`, so a run pays for hashing only when a file is new or has changed.

Sources of the digests: MNIST's original files by the md5 of the uncompressed files published
with them (torchvision checks only the md5 of the .gz downloads, and only that the raw files
exist); the other entries (and the sha256 of MNIST's exact files) by the sha256 of the copies
this project verified against their upstream repositories (git blob ids, published md5s and
counts: 42,068 / 3,370 / 3,761 PTB lines, 12,195 IAM-OnDB line files of 1,907 forms ...).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import lzma
import zlib
from collections.abc import Iterable
from pathlib import Path

from lnrepro.data.common import cache_dir, write_cache
from lnrepro.errors import ConfigError, DataError

log = logging.getLogger(__name__)

ORIGINAL = "the original file"
# the near-exact reconstruction of MNIST's training images that some copies hold (the original
# file was not obtainable in full): it verifies, and is named as such in the log
MNIST_RECONSTRUCTION = (
    "NOT the original file: the near-exact reconstruction of the training "
    "images (0.048 % of pixels, all of original value 1, read as 0)"
)


def _sha256sums(lines: str, folder: str = "") -> dict[str, dict[str, str]]:
    """`sha256sum` output ("<hex>  <name>" lines) as KNOWN entries of original files."""
    return {
        folder + name: {f"sha256:{digest}": ORIGINAL}
        for digest, name in (line.split() for line in lines.strip().splitlines())
    }


KNOWN: dict[str, dict[str, dict[str, str]]] = {
    "MNIST": {
        "train-images-idx3-ubyte": {
            "md5:6bbc9ace898e44ae57da46a324031adb": ORIGINAL,
            "sha256:b61ffb6f513fd9ff8d89824731f6b4ed7863c759c33056d701efb8412469fb04": MNIST_RECONSTRUCTION,
        },
        "train-labels-idx1-ubyte": {
            "md5:a25bea736e30d166cdddb491f175f624": ORIGINAL,
            "sha256:65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5": ORIGINAL,
        },
        "t10k-images-idx3-ubyte": {
            "md5:2646ac647ad5339dbf082846283269ea": ORIGINAL,
            "sha256:0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7": ORIGINAL,
        },
        "t10k-labels-idx1-ubyte": {
            "md5:27ae3e4e09519cfbb04c329615203637": ORIGINAL,
            "sha256:ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2": ORIGINAL,
        },
    },
    # Mikolov's simple-examples.tgz, data/
    "Penn Treebank": _sha256sums("""
fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf  ptb.train.txt
c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2  ptb.valid.txt
dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0  ptb.test.txt
e313d91425e06c4f0a8fb6e881dcce0c291f2a0e9f4dda54833069b122f91da9  ptb.char.train.txt
21661f63ec355085879458b6524644d4add5573541b4be14fb52ab2e2e995eb8  ptb.char.valid.txt
1ef5607ac3c463b16e38bfe7900dd3bfc91de5a96e0f21e7eab5188b465b8ebe  ptb.char.test.txt
"""),
    # the tars in {lineStrokes,ascii}-all.tar.xz|.gz
    "IAM-OnDB": _sha256sums("""
b2069270cd5aa5e9b1fb81dba87c70d91ad685fe2c58de949ff1ce3ddf533722  lineStrokes-all.tar
66f26183eec26ed24a59725ce8312133ccbed70c7c3cc5e8969cc3b6c770b63c  ascii-all.tar
"""),
    # SentEval's copies and file names
    "SentEval": _sha256sums("""
34e5b0da2d491e46b700b00afe735aaae0962bcfe4f7f22b2d8077e714fa370f  MR/rt-polarity.pos
c4ac36eaa8adc8ee31c31f69594bfbe68d83ef5b6db53f1f19b28c0be52f3999  MR/rt-polarity.neg
91a20a4ffeb5d38a39a4087bb247e16538aff21e7d621ae59738379f39f21732  CR/custrev.pos
ec94532766f6f962094841ab3bee2ad6f232f996c3756825a91e78bcc294750f  CR/custrev.neg
274c2ffe59c204dc4df779848561786f59a98cc20dda3cfdd7d9f76a4f730710  SUBJ/subj.subjective
d8ccd43f1674f1c17e4ab717564e3561cfb719b0db4cfb19e5677427c68ff8a1  SUBJ/subj.objective
7487dbb74c77383e60b292845495163a9e21fb70a4fdacdda933413e43163f0d  MPQA/mpqa.pos
8da6e035fa4cea02f0555091096b29a6b3995ff0adf41fad25008dcee066b79e  MPQA/mpqa.neg
8bd6e79493f43bbd22c364587366a1dced54e1e31259eaa92721a0f526031116  TREC/train_5500.label
86ad53c8fc9d397ab2f4be7c967d8efb470b260140557d3e57afad69d1b88b76  TREC/TREC_10.label
d07bdb73963dda1b2012f4d78c24044cd9503b1109218a518a481616973cf960  SICK/SICK_train.txt
0d0786bd8671a0a70614f2f890b8ab24b3c24d1ccb624bcca87618091fbe4f11  SICK/SICK_trial.txt
4c9aa1bb3c5bbf732520fe35b23c121739472a38eb47e7d5336e6df51896be02  SICK/SICK_test_annotated.txt
"""),
    # the public-domain stand-in for BookCorpus: <data_dir>/books/
    "the book corpus": {
        **_sha256sums(
            """
d56006eca7bfefc7f8827c0111395fa2bbf8bc2980b72f54d7af74f14e1ab3c2  alice_in_wonderland.txt
353453d4e0e50ce76e05c25b2723cee91774604e66eaa3550b5646fffffca85d  canterbury_tales.txt
a00beff3bd3bd02ae668d344db842f75f26541afe4442e34dedcffd89db35260  gullivers_travels.txt
a956143fcc6a128dcbe60109b6c17f14255bfa55ba13ff4bb535508b8f47623e  hamlet.txt
b483d1cb81b0f8a047cfd1703780203ed801ec84bb72c27561c6851b8b593c37  ivanhoe.txt
dec8a3eceb387a06f7d0b5ccb32a05691ae7b6b03ce0caffcb1edc2872da2d63  leviathan.txt
8985b6a39833c1e34e2fa06fd9cfcbfa3b17962c7cb92602faf5a5772bba0ff2  moby_dick.txt
173be41259506f873959821cd946ae565bd9a0aed5446dcfe210136c3601d8fc  platon.txt
4415324654fe0b5cc1d8deb67cf3c7f01a811070c94fbccf5f723377e32827ed  pride_and_prejudice.txt
02c9eb76d0162f655a590391f8832d91977ae56383484ba02cf5a0a42954bab4  sherlock.txt
cade50d3fe7fd52d418eda2a1eaf531f37c560d4ba0f4eb0205415122c4ed57f  tom_sawyer.txt
c3daf1c099ad93d1592de221f3b8fe6b7d3ddb29896b2730f9281e0639956dda  us_constitution.txt
9e921ecb0c7919ae52bb04428d4ba100c3317be37fdd4e99116fa2d2c6a225e2  war_and_piece.txt
408f216fd5ba2a81065667476f2b77b01c311b4ae74763bbdafd2402890119f9  war_of_the_worlds.txt
""",
            "gutenberg_pd/",
        ),
        **_sha256sums(
            """
76a28c636265905bcf72712d80d1c6e773e55279b919b843825cb2770b99e59e  austen-emma.txt
8e3cd75843eae6578c0b8f48350615ed653910b3f645e514391e07ba5eb2e40c  austen-persuasion.txt
22327c09d537811b7f15006aaad69ad25d98b8c5f2a6fb0203ec13e9f3982d84  austen-sense.txt
160dc526b20d661fa5b86b31dda98b1e869e6a6eadf258b99108d43ed09c961d  blake-poems.txt
957ece2242697855a68d6a0216a0c6443dab7ed2d17da3f86e379035b849fca2  bryant-stories.txt
4e4242a7c5c7e0703ea9b9daa1b6b61e7cafca902748a4be64d9ec9b55b09c6a  burgess-busterbrown.txt
b430be55ff4362199591ff6958afbcd0dc4e1a28d0d9c6796b780c207d7c8760  carroll-alice.txt
e21f058f0cbf7c14189c973006ba214b90c733d581ca0fc69b99e3d75b068445  chesterton-ball.txt
db337dcffb50771b2415b69a2775d372578804e65f8fdec6e53c096b95d95e99  chesterton-brown.txt
10e1acb6c64ba4d2ca89697c7bf923798797f5c24f139b6e451b5b7d6d7482d0  chesterton-thursday.txt
bd9bc2cfaadf7acbffa8dd63569041624a659cf753e5d8d31c7300c1c004f297  edgeworth-parents.txt
07fb87e563dbbe9523179e9ba2ec00dcd0e293641dbfd3db25d2f915430d3d8b  melville-moby_dick.txt
85c5b1cfe49474f4c19c54b8f997b839f16253ed282a86c93d56542e196ece05  milton-paradise.txt
36b5d937cbfe110de7720277d819e1cc41cf9ddb053b97a26d9df67f31c94200  shakespeare-caesar.txt
6d06298ee6448bd48a2250ee00a4a2d9a9e4487a46c75ee22271ccfc0cf3d6ef  shakespeare-hamlet.txt
444ea649552ad86fbb74b0926f8a3f888264a04e30308191afa544f51e607976  shakespeare-macbeth.txt
802545502fcc24ef7ad48ec1e61db70fd7b4002662cf6d0a05a4619052cae83d  whitman-leaves.txt
""",
            "nltk_gutenberg_tokenized/",
        ),
    },
}

# Exact counts where a checksum cannot apply (extracted trees) and as the archive readers'
# damage check: IAM-OnDB's line files (<form>-NN.xml) and transcriptions (<form>.txt).
IAM_ONDB_FILES = {"lineStrokes": 12195, "ascii": 1907}

COMPRESSED = {".gz": gzip.open, ".xz": lzma.open}


def check_flag(verify) -> bool:
    if not isinstance(verify, bool):
        raise ConfigError(f"data.verify must be true or false, got {verify!r}")
    return verify


def content_name(path: Path) -> str:
    """`path` without a compression suffix: the name its content is recorded under."""
    return (path.with_suffix("") if path.suffix in COMPRESSED else path).as_posix()


def file_digests(path: Path) -> dict[str, str]:
    """sha256 and md5 of the (decompressed) content of `path`, remembered per (path, size,
    mtime) under the cache root. A compressed stream that does not decompress to its end is
    a DataError (damaged or truncated)."""
    path = Path(path).resolve()
    st = path.stat()
    stamp = {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    memo = cache_dir("digests") / f"{hashlib.sha256(str(path).encode()).hexdigest()[:32]}.json"
    try:
        saved = json.loads(memo.read_text())
        if all(saved.get(k) == v for k, v in stamp.items()):
            return saved["digests"]
    except (OSError, ValueError, KeyError, AttributeError):
        pass
    sha, md5 = hashlib.sha256(), hashlib.md5()
    opener = COMPRESSED.get(path.suffix, open)
    try:
        with opener(path, "rb") as f:
            while chunk := f.read(1 << 20):
                sha.update(chunk)
                md5.update(chunk)
    except (EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile) as e:
        raise DataError(
            f"{path} does not decompress ({type(e).__name__}: {e}): the file is "
            "damaged or truncated; restore it"
        ) from None
    digests = {"sha256": sha.hexdigest(), "md5": md5.hexdigest()}
    write_cache(memo, lambda f: f.write(json.dumps({**stamp, "digests": digests}).encode()))
    return digests


def verify_files(
    dataset: str, folder: Path, files: Iterable[Path], verify: bool, complete: bool = False
) -> None:
    """Check each of `files` that `KNOWN[dataset]` names (by its path inside `folder`) against
    the recorded digests, before any use. With `complete`, the known files of every subfolder
    that `files` draw from must all be there (a corpus of many files silently shrinks
    otherwise). `verify=False`: one warning, nothing checked."""
    folder = Path(folder)
    if not check_flag(verify):
        log.warning(
            "data.verify=false: %s in %s is used without checking it against the "
            "recorded checksums",
            dataset,
            folder,
        )
        return
    known = KNOWN[dataset]
    names = {}
    for f in files:
        try:
            names[content_name(Path(f).relative_to(folder))] = Path(f)
        except ValueError:  # outside the dataset folder: not a file we know
            continue
    for name, path in names.items():
        if name not in known:
            continue
        got = file_digests(path)
        label = next(
            (
                known[name][d]
                for d in (f"sha256:{got['sha256']}", f"md5:{got['md5']}")
                if d in known[name]
            ),
            None,
        )
        if label is None:
            raise DataError(
                f"{path} does not match the recorded checksum of {dataset}'s {name} (sha256 "
                f"{got['sha256'][:16]}...): the file is damaged, truncated or another version. "
                "Restore it, or pass data.verify=false to use it anyway"
            )
        if label != ORIGINAL:
            _note(dataset, name, path, label, got["sha256"])
    if complete:
        folders = {str(Path(n).parent) for n in names}
        missing = sorted(n for n in known if str(Path(n).parent) in folders and n not in names)
        if missing:
            raise DataError(
                f"{dataset} in {folder} is incomplete: {len(missing)} known file(s) missing "
                f"({', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}). Restore them, "
                "or pass data.verify=false to use what is there"
            )


# What the files a run read are, when not the original files (MNIST_RECONSTRUCTION), since the
# last `pop_notes`: train.py records them in the run's summary.json as `data_notes`.
_notes: dict[str, str] = {}


def _note(dataset: str, name: str, path: Path, label: str, sha256: str) -> None:
    """Record that `path` (`dataset`'s `name`) is not the original file; say it in the log once
    per cache (a marker under the cache root, never in the data folder), not in every run."""
    _notes[f"{dataset} {name}"] = label
    key = hashlib.sha256(f"{Path(path).resolve()}|{sha256}|{label}".encode()).hexdigest()[:32]
    marker = cache_dir("notices") / key
    if marker.exists():
        log.debug("%s: %s", path, label)
        return
    log.info("%s: %s (said once; every run's summary.json records it as data_notes)", path, label)
    write_cache(marker, lambda f: f.write(f"{path}: {label}\n".encode()))


def pop_notes() -> list[str]:
    """The data notes recorded since the last call ("<dataset> <file>: <what it is>"), cleared."""
    notes = [f"{k}: {v}" for k, v in sorted(_notes.items())]
    _notes.clear()
    return notes


def check_count(what: str, found: int, expected: int, verify: bool) -> None:
    """An exact count (files, lines, examples) against the recorded one: a DataError, or with
    `verify=False` a warning."""
    if found == expected:
        return
    msg = (
        f"{what}: {found:,} found, the recorded copy has {expected:,} (damaged or incomplete copy?)"
    )
    if verify:
        raise DataError(f"{msg}. Restore it, or pass data.verify=false to use it anyway")
    log.warning("%s; used anyway (data.verify=false)", msg)
