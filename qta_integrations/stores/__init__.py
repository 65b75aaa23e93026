"""Stores: where tools and labelled examples are embedded and searched.

`ToolIndex` (`qta_integrations.stores.base`) is the one interface the core searches through;
each backend lives in its own module:

* `ChromaToolIndex` (`chroma_tool_index`): the embedded Chroma default, in memory, on disk or
  on a Chroma server;
* `VectorStoreToolIndex`: any LangChain ``VectorStore``;
* `LlamaIndexToolIndex`: a LlamaIndex ``VectorStoreIndex``;
* `ExactToolIndex`: brute-force cosine over in-memory matrices, the frozen retriever's exact
  ranking of the whole catalogue (the trainer and the evaluation harness use it);
* `BM25ToolIndex`: BM25 over the tools' texts (the lexical signal and the sparse baseline).

Re-indexing is a sync (`sync_index` with a `RecordManager`); every index saves itself with
`ToolIndex.persist_reference` and comes back with `load_index`.
"""

from qta_integrations.stores.base import IndexEntry, IndexHit, ScoredToolIndex, ToolHit, ToolIndex
from qta_integrations.stores.bm25 import BM25ToolIndex
from qta_integrations.stores.chroma import ChromaToolIndex, chroma_tool_index
from qta_integrations.stores.exact import ExactToolIndex
from qta_integrations.stores.llama_index import LlamaIndexToolIndex
from qta_integrations.stores.loading import load_index
from qta_integrations.stores.records import RecordManager
from qta_integrations.stores.sync import SyncResult, sync_index
from qta_integrations.stores.vectorstore import VectorStoreToolIndex

__all__ = [
    "BM25ToolIndex",
    "ChromaToolIndex",
    "ExactToolIndex",
    "IndexEntry",
    "IndexHit",
    "LlamaIndexToolIndex",
    "RecordManager",
    "ScoredToolIndex",
    "SyncResult",
    "ToolHit",
    "ToolIndex",
    "VectorStoreToolIndex",
    "chroma_tool_index",
    "load_index",
    "sync_index",
]
