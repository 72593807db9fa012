//! The git source: fetching the repository, reading a commit's tree, and remembering the last applied commit.
