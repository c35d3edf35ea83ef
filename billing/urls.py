from django.urls import path

from billing import views

app_name = "billing"

urlpatterns = [
    path("invoices/<int:invoice_id>.pdf", views.invoice_download, {"fmt": "pdf"}, name="invoice-pdf"),
    path("invoices/<int:invoice_id>.csv", views.invoice_download, {"fmt": "csv"}, name="invoice-csv"),
]
