"""Deletion requests: the schema (`schema`), the inbox (`inbox`), the file readers (`readers`),
the row checks (`checks`), the ingest rules (`ingest`), the raw-id catalogue (`catalog`), the
append-only ledger (`ledger`), pseudonyms (`pseudonym`), declared backdoors (`backdoors`) and the
forget/retain sets (`sets`).

Import what you need from its module; importing the package itself loads nothing.
"""
