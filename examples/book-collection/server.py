#!/usr/bin/env python3
"""Book Collection: a collection of book models to add, rename and delete.

- library.books: a collection of references to the book models
- library.book.<id>: a book model {id, title, author}
- call library.book.<id>.set {title?, author?}: rename a book
- call library.books.new {title, author}: add a book
- call library.books.delete {id}: delete a book

Titles and authors must be non-empty strings; anything else is answered
with system.invalidParams, which the page shows. The books live in memory:
a restart of the service starts over, and its system.reset makes the
gateway (and so every page) forget the old ones.

Serves the web client (index.html) on http://127.0.0.1:8083.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # examples/, where page.py lives

from page import run  # noqa: E402
from resservice import Access, Ref, Request, Service, invalid_params, not_found  # noqa: E402

books = {
    1: {"id": 1, "title": "Animal Farm", "author": "George Orwell"},
    2: {"id": 2, "title": "Brave New World", "author": "Aldous Huxley"},
    3: {"id": 3, "title": "Coraline", "author": "Neil Gaiman"},
}
# The collection: book IDs in the order shown.
order = [1, 2, 3]
next_id = 4

service = Service("library")


def book_rid(book_id):
    return f"library.book.{book_id}"


def checked(field, value):
    """A title or author, stripped; invalid params unless a non-empty string."""
    if not isinstance(value, str):
        raise invalid_params(f"{field} must be a string")
    if not value.strip():
        raise invalid_params(f"{field} must not be empty")
    return value.strip()


def find_book(request: Request) -> dict:
    try:
        return books[int(request.path_params["id"])]
    except (KeyError, ValueError):
        raise not_found() from None


@service.access(">")
def access(request: Request) -> Access:
    # Everyone may read everything and call every method.
    return Access(get=True, call="*")


@service.model("book.$id")
def get_book(request: Request) -> dict:
    return find_book(request)


@service.collection("books")
def get_books(request: Request) -> list:
    return [Ref(book_rid(book_id)) for book_id in order]


@service.call("book.$id", "set")
def set_book(request: Request) -> None:
    book = find_book(request)
    params = request.params or {}
    changed = {}
    for field, key in (("Title", "title"), ("Author", "author")):
        if key in params and params[key] != book[key]:
            value = checked(field, params[key])
            if value != book[key]:
                changed[key] = value
    if changed:
        book.update(changed)
        request.change(changed)
    return None


@service.call("books", "new")
def new_book(request: Request) -> None:
    global next_id
    params = request.params or {}
    title, author = params.get("title"), params.get("author")
    if not (isinstance(title, str) and title.strip() and isinstance(author, str) and author.strip()):
        raise invalid_params("Must provide both title and author")
    book = {"id": next_id, "title": title.strip(), "author": author.strip()}
    next_id += 1
    books[book["id"]] = book
    order.append(book["id"])
    request.add(Ref(book_rid(book["id"])), len(order) - 1)
    return None


@service.call("books", "delete")
def delete_book(request: Request) -> None:
    book_id = (request.params or {}).get("id")
    if not isinstance(book_id, int) or isinstance(book_id, bool):
        raise invalid_params("Book ID must be a number")
    if book_id in books:
        del books[book_id]
        idx = order.index(book_id)
        del order[idx]
        request.remove(idx)
    return None


if __name__ == "__main__":
    run(service, page=HERE / "index.html", port=8083, description=__doc__)
