"""Exceptions with messages that name the file and say what to do (pydicom-style precision)."""


class CxrDeviceError(Exception):
    """Base class: an input or setting the user must fix. The CLI prints it and exits 2."""


class MetadataError(CxrDeviceError):
    """A metadata file cannot be used at all (missing columns, unreadable, empty)."""


class DatasetError(CxrDeviceError):
    """A dataset folder or split list cannot be used."""


class SplitError(CxrDeviceError):
    """A split cannot be made as asked, or would put one patient in two splits."""
